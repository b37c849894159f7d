"""Webhook URLs: the syntax a target must have, the callback prefix match, and the address policy.

Registration checks the syntax, and the address policy only when the host
resolves without a DNS query (an IP literal, a numeric IPv4 form such as
2130706433, or `localhost`), because a name can resolve to another address
by the time an event is sent. The address policy is applied at send time to every address
the name resolves to, and the connection goes to an address that passed it.
Condition endpoints of regular orders use the same policy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from budstikke.errors import BudstikkeError

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"https": 443, "http": 80}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The addresses that resolvers give `localhost` and its subdomains (RFC 6761).
LOOPBACK_ADDRESSES: tuple[IPAddress, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)
# Cloud instance metadata services. 169.254.169.254 and fd00:ec2::254 are
# link-local or private anyway. 100.100.100.200 (Alibaba Cloud) is in the
# shared address space, and 168.63.129.16 (Azure WireServer) is a public
# address reachable only inside Azure, so both are named here.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
    )
)
# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64
# (RFC 6052) translates them to that IPv4 address.
NAT64_NETWORK = ipaddress.IPv6Network("64:ff9b::/96")
# Networks that the IANA special-purpose registries mark as not globally
# reachable but that Python 3.11.7's `ipaddress` counts as global. Naming
# them keeps the policy the same on every Python patch release.
# 192.0.0.0/24 is rejected whole, its two anycast service addresses
# (192.0.0.9 and 192.0.0.10) included, because no receiver lives there.
UNREACHABLE_NETWORKS = (
    (ipaddress.IPv4Network("192.0.0.0/24"), "an IETF protocol assignment (192.0.0.0/24)"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)"),
    (ipaddress.IPv6Network("3fff::/20"), "a documentation address (3fff::/20)"),
)


class InvalidWebhookUrlError(BudstikkeError):
    """A webhook or callback URL breaks a syntax rule; the message names the rule."""


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """A checked webhook URL and the parts that the callback prefix match compares."""

    text: str
    scheme: str
    host: str  # lower case; an IPv6 literal without brackets
    port: int
    path: str  # "/" when the URL has none


def parse_webhook_url(raw: str, *, allow_http: bool) -> WebhookUrl:
    """Check a webhook URL's syntax and return its parts; raises InvalidWebhookUrlError.

    The URL must be absolute, https (or http when `allow_http`), ASCII only
    (a domain in punycode, other characters percent-encoded), and without
    user name, password or fragment. It must not have "." or ".." path
    segments, because a server would resolve them to a path outside the one
    that was checked.
    """
    if len(raw) > MAX_URL_LENGTH:
        raise InvalidWebhookUrlError(
            f"the URL must be at most {MAX_URL_LENGTH} characters; got {len(raw)}"
        )
    if not raw.isascii():
        raise InvalidWebhookUrlError(
            "the URL must be ASCII: write the domain in punycode (xn--...) and "
            "percent-encode other characters"
        )
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in raw):
        raise InvalidWebhookUrlError("the URL must not contain spaces or control characters")
    if "\\" in raw:
        raise InvalidWebhookUrlError("the URL must not contain a backslash")
    try:
        parts = urlsplit(raw)
    except ValueError as error:
        raise InvalidWebhookUrlError(f"the URL cannot be parsed: {error}") from None
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed_schemes:
        hint = ""
        if not allow_http:
            hint = " (http is allowed only with BUDSTIKKE_WEBHOOK_ALLOW_HTTP=true)"
        raise InvalidWebhookUrlError(
            f"the URL must start with {' or '.join(s + '://' for s in allowed_schemes)}; "
            f"got {raw[:40]!r}{hint}"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrlError(
            "the URL must not contain a user name or password; authenticate the "
            "webhook by its signature"
        )
    if parts.fragment or raw.endswith("#"):
        raise InvalidWebhookUrlError("the URL must not contain a fragment (#...)")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidWebhookUrlError(f"the URL has no host; got {raw[:40]!r}")
    try:
        explicit_port = parts.port
    except ValueError:
        explicit_port = 0
    if explicit_port == 0:
        raise InvalidWebhookUrlError("the URL's port must be a number from 1 to 65535")
    port = DEFAULT_PORTS[scheme] if explicit_port is None else explicit_port
    path = parts.path or "/"
    segments = unquote(path).split("/")
    if "." in segments or ".." in segments:
        raise InvalidWebhookUrlError("the URL's path must not contain '.' or '..' segments")
    return WebhookUrl(text=raw, scheme=scheme, host=host, port=port, path=path)


def is_under(callback: WebhookUrl, endpoint: WebhookUrl) -> bool:
    """Tell whether a callback URL lies under a registered endpoint URL.

    Scheme, host and port must be equal, and the callback's path must equal
    the endpoint's path or continue it after a "/", so that "/hooks" covers
    "/hooks/order-1" but not "/hooks-other". Query strings are not compared.
    """
    if (callback.scheme, callback.host, callback.port) != (
        endpoint.scheme,
        endpoint.host,
        endpoint.port,
    ):
        return False
    prefix = endpoint.path
    if callback.path == prefix:
        return True
    if not prefix.endswith("/"):
        prefix += "/"
    return callback.path.startswith(prefix)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse a comma-separated list of CIDR networks (addresses alone mean /32 or /128).

    Raises ValueError naming the entry that is not a network.
    """
    networks: list[IPNetwork] = []
    for raw_entry in text.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP network; write a CIDR network such as 10.1.0.0/16"
            ) from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The addresses that webhook and condition endpoint requests may connect to.

    Every address that is not globally routable is refused (loopback,
    private, link-local, multicast, shared, reserved, documentation, cloud
    metadata), unless it lies in one of `allowed_networks`, which the
    operator sets.
    """

    allowed_networks: tuple[IPNetwork, ...] = ()

    def rejection_reason(self, address: IPAddress) -> str | None:
        """Return why the address is refused, or None when requests may go to it."""
        address = unmap(address)
        if any(address in network for network in self.allowed_networks):
            return None
        # A NAT64 address (DNS64 answers on IPv6-only networks) leads to the
        # IPv4 address it embeds, and only that address decides.
        if address not in NAT64_NETWORK:
            reason = classify_address(address)
            if reason is not None:
                return reason
        for embedded in embedded_ipv4(address):
            if any(embedded in network for network in self.allowed_networks):
                continue
            reason = classify_address(embedded)
            if reason is not None:
                return f"{reason} (embedded {embedded})"
        return None

    def first_rejected(self, addresses: Iterable[IPAddress]) -> tuple[IPAddress, str] | None:
        """Return the first refused address and its reason, or None when all may be used."""
        for address in addresses:
            reason = self.rejection_reason(address)
            if reason is not None:
                return address, reason
        return None


def unmap(address: IPAddress) -> IPAddress:
    """Return the IPv4 address of an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else itself."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses that NAT64, 6to4 or Teredo would forward an IPv6 address to."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address in NAT64_NETWORK:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def classify_address(address: IPAddress) -> str | None:
    """Return the kind of address that webhooks must not reach by default, or None."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for network, reason in UNREACHABLE_NETWORKS:
        if address in network:
            return reason
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a globally routable address"),
    )
    for matches, reason in checks:
        if matches:
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """Return the address when the host is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def legacy_ipv4_address(host: str) -> ipaddress.IPv4Address | None:
    """Return the address of a host that inet_aton reads as IPv4, such as 2130706433 or 127.1.

    glibc's getaddrinfo reads these forms as addresses without a DNS query,
    so they are checked like IP literals.
    """
    if not host or host.strip("0123456789abcdefx."):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def fixed_host_addresses(host: str) -> tuple[IPAddress, ...] | None:
    """Return the addresses a host resolves to without a DNS query, or None for a DNS name.

    These hosts are IP literals, the numeric IPv4 forms of
    `legacy_ipv4_address`, and `localhost` with its subdomains. `host` is
    lower case, with an IPv6 literal unbracketed.
    """
    name = host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK_ADDRESSES
    address = literal_address(name) or legacy_ipv4_address(name)
    if address is None:
        return None
    return (address,)


def find_rejected_host_address(host: str, policy: AddressPolicy) -> tuple[IPAddress, str] | None:
    """Return the first address of a host without DNS that the policy rejects, with the reason.

    Returns None when the policy allows every such address, or when the host
    is a DNS name, which is checked at each request against what it resolves
    to then.
    """
    addresses = fixed_host_addresses(host)
    if addresses is None:
        return None
    return policy.first_rejected(addresses)


def describe_host(host: str, address: IPAddress) -> str:
    """Return the host for a message, with the address it stands for when that differs."""
    return host if host == str(address) else f"{host} ({address})"
