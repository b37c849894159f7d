"""Webhook URL syntax, the callback prefix match and the address policy."""

from __future__ import annotations

import ipaddress
import re

import pytest

from budstikke.domain.webhook_requests import check_endpoint_url
from budstikke.domain.webhook_urls import (
    AddressPolicy,
    InvalidWebhookUrlError,
    fixed_host_addresses,
    is_under,
    parse_networks,
    parse_webhook_url,
)


def test_parse_https_url() -> None:
    url = parse_webhook_url("https://Hooks.Example.com/budstikke?x=1", allow_http=False)

    assert url.scheme == "https"
    assert url.host == "hooks.example.com"
    assert url.port == 443
    assert url.path == "/budstikke"


def test_parse_url_without_path_is_root() -> None:
    assert parse_webhook_url("https://hooks.example.com", allow_http=False).path == "/"


def test_parse_ipv6_literal() -> None:
    url = parse_webhook_url("https://[2001:db8::1]:8443/x", allow_http=False)

    assert url.host == "2001:db8::1"
    assert url.port == 8443


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/", "must start with https://"),
        ("ftp://hooks.example.com/", "must start with https://"),
        ("hooks.example.com/x", "must start with https://"),
        ("https:///path-only", "no host"),
        ("https://user:pass@hooks.example.com/", "user name or password"),
        ("https://token@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com/#part", "fragment"),
        ("https://hooks.example.com:99999/", "port"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com/a b", "spaces or control characters"),
        ("https://hooks.example.com/a\nb", "spaces or control characters"),
        ("https://bücher.example/", "ASCII"),
        ("https://hooks.example.com/a\\b", "backslash"),
        ("https://hooks.example.com/hooks/../admin", "'..'"),
        ("https://hooks.example.com/hooks/%2e%2e/admin", "'..'"),
        ("https://hooks.example.com/./x", "'.'"),
        ("https://[::1/", "cannot be parsed"),
        ("https://hooks.example.com/" + "a" * 2000, "at most 2000"),
    ],
)
def test_parse_rejects_bad_url(url: str, message: str) -> None:
    with pytest.raises(InvalidWebhookUrlError) as raised:
        parse_webhook_url(url, allow_http=False)

    assert message in str(raised.value)


def test_parse_accepts_http_when_allowed() -> None:
    assert parse_webhook_url("http://hooks.example.com/", allow_http=True).port == 80


@pytest.mark.parametrize(
    ("callback", "endpoint", "expected"),
    [
        ("https://a.example/hooks/order-1", "https://a.example/hooks", True),
        ("https://a.example/hooks/order-1", "https://a.example/hooks/", True),
        ("https://a.example/hooks", "https://a.example/hooks", True),
        ("https://a.example/hooks?order=1", "https://a.example/hooks", True),
        ("https://a.example/anything", "https://a.example", True),
        ("https://a.example/hooks-other", "https://a.example/hooks", False),
        ("https://a.example/hook", "https://a.example/hooks", False),
        ("https://a.example.evil.example/hooks/x", "https://a.example/hooks", False),
        ("https://evil.example/https://a.example/hooks", "https://a.example/hooks", False),
        ("https://a.example:8443/hooks/x", "https://a.example/hooks", False),
        ("http://a.example/hooks/x", "https://a.example/hooks", False),
        ("https://A.EXAMPLE/hooks/x", "https://a.example/hooks", True),
        ("https://a.example:443/hooks/x", "https://a.example/hooks", True),
    ],
)
def test_callback_prefix_match(callback: str, endpoint: str, expected: bool) -> None:
    matched = is_under(
        parse_webhook_url(callback, allow_http=True), parse_webhook_url(endpoint, allow_http=True)
    )

    assert matched is expected


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("fc00::1", "private"),
        ("100.64.0.1", "not a globally routable"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("224.0.0.1", "multicast"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "private"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "embedded 127.0.0.1"),
        ("64:ff9b::a00:1", "embedded 10.0.0.1"),
        ("2002:7f00:1::1", "embedded 127.0.0.1"),
        ("2002:a9fe:a9fe::1", "metadata address (embedded 169.254.169.254)"),
        ("2002:a83f:8110::1", "metadata address (embedded 168.63.129.16)"),
        ("64:ff9b::a9fe:a9fe", "metadata address (embedded 169.254.169.254)"),
        ("64:ff9b::a83f:8110", "metadata address (embedded 168.63.129.16)"),
        ("64:ff9b:1::808:808", "local-use NAT64"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:168.63.129.16", "metadata"),
        ("::ffff:100.100.100.200", "metadata"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),
        ("2001:0:808:808::f5ff:fffe", "private"),
        ("192.0.0.8", "IETF protocol assignment"),
        ("3fff::1", "documentation"),
        ("::7f00:1", "reserved"),
    ],
)
def test_policy_refuses_non_public_address(address: str, reason: str) -> None:
    reason_given = AddressPolicy().rejection_reason(ipaddress.ip_address(address))

    assert reason_given is not None
    assert reason in reason_given


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "64:ff9b::808:808"]
)
def test_policy_allows_public_address(address: str) -> None:
    assert AddressPolicy().rejection_reason(ipaddress.ip_address(address)) is None


def test_policy_allows_listed_networks() -> None:
    policy = AddressPolicy(parse_networks("127.0.0.1/32, 10.20.0.0/16"))

    assert policy.rejection_reason(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.rejection_reason(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.rejection_reason(ipaddress.ip_address("10.20.5.5")) is None
    assert policy.rejection_reason(ipaddress.ip_address("127.0.0.2")) is not None
    assert policy.rejection_reason(ipaddress.ip_address("10.21.0.1")) is not None


def test_policy_refuses_when_any_address_is_refused() -> None:
    policy = AddressPolicy(parse_networks("127.0.0.1"))
    addresses = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.1")]

    refused = policy.first_rejected(addresses)

    assert refused is not None
    assert str(refused[0]) == "10.0.0.1"


def test_parse_networks_names_bad_entry() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33' is not an IP network")):
        parse_networks("127.0.0.1/32,10.0.0.0/33")


def test_parse_networks_empty() -> None:
    assert parse_networks(" , ") == ()


def test_registration_rejects_private_literal() -> None:
    with pytest.raises(InvalidWebhookUrlError, match=re.escape("10.1.2.3 is a private address")):
        check_endpoint_url("https://10.1.2.3/hooks", allow_http=False, policy=AddressPolicy())


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://[64:ff9b::a00:1]/hooks", "embedded 10.0.0.1"),
        ("https://[2002:a9fe:a9fe::1]/hooks", "metadata address (embedded 169.254.169.254)"),
        ("https://[::ffff:168.63.129.16]/hooks", "a cloud metadata address"),
        ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hooks", "a private address"),
    ],
)
def test_registration_rejects_tunnelled_literal(url: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookUrlError) as raised:
        check_endpoint_url(url, allow_http=False, policy=AddressPolicy())

    assert reason in str(raised.value)
    assert "BUDSTIKKE_WEBHOOK_ALLOWED_NETWORKS" in str(raised.value)


def test_registration_accepts_allowed_literal() -> None:
    policy = AddressPolicy(parse_networks("10.0.0.0/8"))

    url = check_endpoint_url("https://10.1.2.3/hooks", allow_http=False, policy=policy)

    assert url == "https://10.1.2.3/hooks"


def test_registration_leaves_names_to_send_time() -> None:
    url = check_endpoint_url(
        "https://hooks.example.com/hooks", allow_http=False, policy=AddressPolicy()
    )

    assert url == "https://hooks.example.com/hooks"


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("localhost", "127.0.0.1"),
        ("localhost.", "127.0.0.1"),
        ("a.b.localhost", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ],
)
def test_registration_rejects_hosts_without_dns(host: str, address: str) -> None:
    with pytest.raises(InvalidWebhookUrlError) as raised:
        check_endpoint_url(f"https://{host}/hooks", allow_http=False, policy=AddressPolicy())

    assert f"the host {host} ({address}) is " in str(raised.value)


def test_registration_allows_numeric_form_in_allowed_network() -> None:
    policy = AddressPolicy(parse_networks("127.0.0.0/8"))

    url = check_endpoint_url("https://0x7f.1/hooks", allow_http=False, policy=policy)

    assert url == "https://0x7f.1/hooks"


@pytest.mark.parametrize("host", ["hooks.example.com", "0x7g.1", "1e3", "face.b00c", "deadbeef"])
def test_fixed_host_addresses_leave_names_to_dns(host: str) -> None:
    assert fixed_host_addresses(host) is None
