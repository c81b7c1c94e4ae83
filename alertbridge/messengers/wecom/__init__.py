"""Everything WeCom (企业微信): the messenger that delivers through WeCom apps and group robots.

``messenger`` is WeCom as the delivery core sees it (``WeComMessenger``:
template cards, robot @mentions, send limits from ``limits``, cards turned
"已恢复" on resolution). The channels (``app``, ``robot``, with their
``card`` and ``mentions``) build request bodies and call ``WeComClient``
(``client``, ``token``, ``media``, ``errcodes``, ``errors``); ``callback``, ``crypto``, ``inbound``
and ``callback_errors`` serve the encrypted callback where users reply and
press card buttons. Everything that knows about WeCom's API, errcodes,
tokens and query-string credentials lives in this package: the rest of
alertbridge reaches it through ``alertbridge.messengers`` (the port) and
``alertbridge.messengers.registry``.
"""
