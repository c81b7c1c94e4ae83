"""Test support shipped with the package: a faithful fake WeCom API
(``alertbridge.testing.fake_wecom``) and a helper that serves any ASGI app on a
real loopback uvicorn server in a thread (``alertbridge.testing.server``).

Shipped rather than kept under ``tests/`` so that operators can run the fake
for a trial (``python -m alertbridge.testing.fake_wecom``) and other test
suites can reuse it. Nothing in the service imports this package.
"""
