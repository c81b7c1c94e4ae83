"""The WeCom (企业微信) server API client: access tokens, errcodes, message sending.

Channels (``alertbridge.channels``) build request bodies and call
``WeComClient``; everything that knows about errcodes, tokens and WeCom's
query-string credentials lives in this package.
"""
