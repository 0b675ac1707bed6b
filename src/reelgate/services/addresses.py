"""Where webhooks may go: public addresses only, unless the operator allows a network.

A URL's host is resolved and every address it resolves to is checked, at create and
again before each delivery (a name may point elsewhere by then); the delivery then
connects to an address that was checked, so a second lookup cannot swap it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from reelgate.domain.errors import HostUnresolvable, InvalidParameter

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[IpNetwork]:
    """``"127.0.0.0/8, 10.1.2.3"`` as networks; ``ValueError`` for a bad entry."""
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    ]


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: its host, port and the addresses it may be reached at."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


class AddressGuard:
    """Refuses URLs whose host resolves to a non-public address outside ``allowed``.

    Non-public: private, loopback, link-local, shared (CGNAT), reserved, multicast,
    unspecified, and IPv4 mapped into IPv6 of any of these.
    """

    def __init__(self, allowed: Sequence[IpNetwork] = ()) -> None:
        self.allowed = list(allowed)

    def permitted(self, address: IpAddress) -> bool:
        """Whether a delivery may connect to ``address``."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    async def check(self, url: str, *, param: str = "url") -> Target:
        """Resolve ``url``'s host and check every address; ``InvalidParameter`` otherwise."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            literal: IpAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except (OSError, UnicodeError) as exc:
                raise HostUnresolvable(
                    f"{param}: the host {host[:100]!r} does not resolve", param=param
                ) from exc
            found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not found:
            raise HostUnresolvable(f"{param}: the host {host[:100]!r} has no address", param=param)
        for address in found:
            if not self.permitted(address):
                raise InvalidParameter(
                    f"{param}: {host[:100]!r} resolves to {address}, a private, loopback, "
                    "link-local or reserved address; webhooks go to public addresses only",
                    param=param,
                )
        unique = tuple(dict.fromkeys(str(a) for a in found))
        return Target(url, host, port, unique)
