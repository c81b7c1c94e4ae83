"""Which sender a notification came from, and which silencer speaks for it.

An alert group is named by its ``groupKey`` only within one sender: an
Alertmanager and a Grafana both send ``{}:{}`` for a route without
``group_by``, and two independent Alertmanagers can share a route. A
reference is therefore keyed on the receiver, the source, the sender's
*cluster* and the group key, and ``silence`` goes to that sender's silencer.

The cluster is what the notification's ``externalURL`` says about the
sender:

* a URL listed in a ``[silencers.NAME]`` of the same kind names that
  silencer, so HA peers that each send their own ``--web.external-url`` still
  count as one cluster when they are listed together (as a silencer's
  ``url`` list of peers is meant to be);
* any other URL is its own cluster; HA peers normally share one external
  URL (the load balancer's), so their copies still meet on one reference.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

from alertbridge.config import Config

# The prefix of a cluster that is a configured silencer's name.
SILENCER_CLUSTER: Final = "silencer:"


def normalized_url(url: str) -> str:
    """``url`` without what does not change where it points: case of scheme and
    host, a trailing slash, surrounding blanks."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return text.rstrip("/")
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, parts.fragment)
    )


def cluster_of(config: Config, source: str, external_url: str) -> str:
    """The sender ``external_url`` names, as references key it (see the module doc)."""
    url = normalized_url(external_url)
    if not url:
        return ""
    for name, silencer in config.silencers.items():
        if silencer.kind == source and url in {normalized_url(u) for u in silencer.url}:
            return SILENCER_CLUSTER + name
    return url


def silencer_for(config: Config, receiver: str, source: str, cluster: str) -> str | None:
    """The silencer for a reference of ``receiver`` from ``source`` and ``cluster``.

    The cluster's own silencer first; else the receiver's silencer if it is
    of the source's kind; else the only silencer of that kind. ``None``
    when there is none: a Grafana alert's silence must never be created in an
    Alertmanager (or the other way round), where it would silence nothing.
    """
    if cluster.startswith(SILENCER_CLUSTER):
        name = cluster.removeprefix(SILENCER_CLUSTER)
        if name in config.silencers:
            return name
    named = config.silencer_of(receiver) if receiver in config.receivers else None
    if named is not None and named in config.silencers and config.silencers[named].kind == source:
        return named
    same_kind = [name for name, silencer in config.silencers.items() if silencer.kind == source]
    return same_kind[0] if len(same_kind) == 1 else None
