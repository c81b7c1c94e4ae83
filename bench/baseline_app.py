"""The bare Starlette baseline the ingest benchmark compares alertbridge with.

One route at alertbridge's webhook path that only parses the JSON body and
answers a small JSON object: the floor any Python webhook receiver on this
stack pays (HTTP parsing, routing, body read, ``json.loads``, response). It is
served exactly as ``alertbridge serve`` serves (alertbridge/cli.py ``_serve``):
``uvicorn.Server`` with default loop and HTTP implementation (uvloop and
httptools when installed), ``log_config=None``, no access log, no server
header, lifespan on. So the ratio measures alertbridge's own work (validation,
durable commit, logging, the dispatcher) and nothing else.

    python -m bench.baseline_app --port 8090
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def webhook(request: Request) -> JSONResponse:
    await request.json()
    return JSONResponse({"status": "accepted"})


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/alertmanager/{receiver}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def serve(app: Starlette, host: str, port: int) -> None:
    """Serve ``app`` the way ``alertbridge serve`` serves (see the module's docstring)."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
        )
    )
    server.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(create_app(), args.host, args.port)


if __name__ == "__main__":
    main()
