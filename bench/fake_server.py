"""The fake WeCom as its own process, for the scenarios that need WeCom.

``python -m alertbridge.testing.fake_wecom`` logs every request at INFO; at
storm rates that is CPU taken from the load core for nothing, so this runs the
same ``FakeWeCom`` (default app and robot, every user, party and tag exists,
WeCom's per-member limits of 30 a minute and 1000 an hour enforced by silently
dropping, as WeCom does) without the access log. Scenarios read what it
delivered and dropped over its ``/_fake/`` HTTP endpoints; each record carries
the wall-clock time it was received (``Message.timestamp``).

    python -m bench.fake_server --port 8091
"""

from __future__ import annotations

import argparse

import uvicorn

from alertbridge.testing.fake_wecom import FakeWeCom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    fake = FakeWeCom()
    uvicorn.Server(
        uvicorn.Config(
            fake.app,
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            log_level="warning",
            lifespan="on",
        )
    ).run()


if __name__ == "__main__":
    main()
