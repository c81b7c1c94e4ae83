"""The SQLite store: outbox and state in one database file, for one serving process.

``db`` holds what both share (the durable connection, value encoding);
``outbox`` and ``state`` implement the ``OutboxStore`` and ``StateStore``
protocols of ``alertbridge.stores``.
"""
