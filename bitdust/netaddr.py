"""Socket addresses as every shell compares them: one spelling per peer.

A dual-stack socket reports an IPv4 peer as ``::ffff:a.b.c.d``; rate limits, caps per address and
reply matching must see the same peer as the same key whichever socket it came through.
"""

from __future__ import annotations

import ipaddress

Addr = tuple[str, int]


def normalize_addr(addr: tuple) -> Addr:  # type: ignore[type-arg]
    """(host, port) from a socket address; IPv4-mapped IPv6 becomes plain IPv4."""
    host, port = addr[0], addr[1]
    if ":" not in host:
        return (host, port)  # IPv4 as the kernel writes it: canonical already
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return (host, port)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return (str(ip.ipv4_mapped), port)
    return (str(ip), port)
