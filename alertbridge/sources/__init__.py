"""Sources: parse a webhook body of one alerting system into an ``AlertGroup``.

Each source module exposes ``parse(body: bytes) -> AlertGroup`` and raises
``PayloadError`` with a one-line reason for anything it cannot accept. Parsing
is pure: no I/O, no clock.
"""
