"""The SSRF guard, defined once for every outgoing request the box makes to an address a client gave it (image
downloads in appliance/fetch.py, webhook deliveries in appliance/webhooks.py).

The host is resolved HERE and every address it resolves to is checked: loopback, private, link-local, CGNAT,
multicast, reserved, unspecified and cloud metadata addresses are refused unless the allow list names the network
or the hostname. The caller then connects to one of the checked addresses (never resolving the name again), so a
DNS answer that changes in between (DNS rebinding) cannot slip past the check.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Unresolvable(Exception):
    """The host name did not resolve; `str(exc)` is the resolver's reason."""


@dataclass(frozen=True)
class AllowList:
    """Networks (CIDRs) and hostnames allowed even though they are not public (fetch.allow_networks,
    webhooks.allow_networks)."""

    nets: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> "AllowList":
        nets: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            entry = entry.strip()
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(nets), frozenset(hosts))


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal: itself), each once, in the resolver's order; may be empty.
    Raises Unresolvable."""
    if is_ip_literal(host):
        return [ipaddress.ip_address(host)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(str(exc)) from None
    # an IPv6 zone id ("%eth0") is dropped: it names the interface, not the address
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def first_refused(host: str, addresses: list[IPAddress], allow: AllowList) -> tuple[IPAddress, str] | None:
    """The first address connecting to is refused for, with what kind of address it is; None when all are fine
    (or the host itself is allowed). One refused address refuses the host: the caller must not pick the good ones."""
    if host in allow.hosts:
        return None
    for address in addresses:
        reason = refusal(address, allow.nets)
        if reason:
            return address, reason
    return None


def refusal(address: IPAddress, allowed_nets: tuple[IPNetwork, ...] = ()) -> str | None:
    """None if connecting to `address` is fine, else what kind of address it is."""
    # An IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) address reaches the embedded IPv4 address:
    # judge it by that one (the IPv6 forms themselves sit in ranges Python calls reserved).
    judged = address
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            judged = address.ipv4_mapped
        elif address in _NAT64:
            judged = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    candidates = [address, judged]
    if any(a in net for a in candidates for net in allowed_nets if a.version == net.version):
        return None
    a = judged
    if a in _METADATA:
        return "a cloud metadata address"
    if a.is_unspecified:
        return "an unspecified address"
    if a.is_loopback:
        return "a loopback address"
    if a.is_link_local:
        return "a link-local address"
    if isinstance(a, ipaddress.IPv4Address) and a in _CGNAT:
        return "a carrier-grade NAT address"
    if a.is_multicast:
        return "a multicast address"
    if a.is_reserved:  # before is_private, which also covers 240.0.0.0/4
        return "a reserved address"
    if a.is_private:
        return "a private address"
    if not a.is_global:
        return "not a public address"
    return None
