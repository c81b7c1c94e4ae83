"""Test support shipped with the package.

- ``fake_wecom``: a faithful fake WeCom API (tokens, byte limits, errcodes,
  rate limits, cards, media upload, fault injection);
- ``wecom_callback``: plays WeCom's side of the callback URL (signed,
  encrypted messages and button clicks);
- ``grafana_standin``: Grafana's silence API in front of a real Alertmanager;
- ``server``: serves any ASGI app on a real loopback uvicorn server in a thread.

Shipped rather than kept under ``tests/`` so that operators can run the fake
for a trial (``python -m alertbridge.testing.fake_wecom``) and other test
suites can reuse it. Nothing in the service imports this package.
"""
