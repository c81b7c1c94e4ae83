"""Which network addresses a fetch of a URL from a webhook payload may reach.

Public addresses only, unless the operator's ``[images].allow`` list trusts
the host, host and port, address or network (see ``alertbridge.images`` for
the threat). Its own module so the config can validate ``allow`` without
importing the fetcher, which needs the config.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes that carry an IPv4 address a gateway would forward to.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


def is_public_address(ip: IPAddress) -> bool:
    """True iff ``ip`` is a globally routable unicast address.

    IPv6 addresses that embed an IPv4 address (mapped ``::ffff:a.b.c.d``,
    6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by that address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if ip in _LOCAL_NAT64 or ip.is_site_local:
            return False
    elif ip in _SHARED:
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


class AllowList:
    """``[images].allow``: entries the operator trusts even when they are not public.

    Each entry is a host name (``grafana.internal``: any port, whatever it
    resolves to), a host and port (``grafana.internal:3000``, ``10.0.0.5:3000``,
    ``[fd00::5]:3000``), an address (``127.0.0.1``, ``::1``) or a network
    (``10.0.0.0/8``, ``fd00::/8``): any host resolving into it, any port.

    Raises ``ValueError`` for an entry that is none of these.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.hosts: set[str] = set()
        self.host_ports: set[tuple[str, int]] = set()
        self.networks: list[IPNetwork] = []
        for raw in entries:
            self._add(raw)

    def _add(self, raw: str) -> None:
        entry = raw.strip()
        if not entry:
            raise ValueError("an empty entry")
        try:
            self.networks.append(ipaddress.ip_network(entry, strict=False))
            return
        except ValueError:
            pass
        host, port = entry, None
        if entry.startswith("["):
            inner, sep, rest = entry[1:].partition("]")
            if not sep or parse_ip(inner) is None or not rest.startswith(":"):
                raise ValueError(f"{raw!r}: expected [IPv6]:PORT")
            host, port = inner, rest[1:]
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
            raise ValueError(f"{raw!r}: the port must be 1-65535")
        name = _normal_host(host)
        ip = parse_ip(name)
        if ip is None and (not name or any(c in name for c in "/:@ ?#[]%\\")):
            raise ValueError(f"{raw!r}: expected a host, host:port, address or CIDR network")
        if port is None:
            self.hosts.add(name)
        else:
            self.host_ports.add((str(ip) if ip is not None else name, int(port)))

    def covers_host(self, host: str, port: int) -> bool:
        """The URL's host (a name or an IP literal) itself is trusted."""
        name = _normal_host(host)
        ip = parse_ip(name)
        if ip is not None:
            name = str(ip)
        return name in self.hosts or (name, port) in self.host_ports

    def covers_address(self, ip: IPAddress, port: int) -> bool:
        """A resolved address is trusted (by network, or as ``address:port``)."""
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(
            (str(c), port) in self.host_ports or any(c in net for net in self.networks) for c in candidates
        )
