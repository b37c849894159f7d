"""The smpp:// and smpps:// URL of the SMPP provider."""

from __future__ import annotations

import pytest

from budstikke.channels.smpp import SmppConfig, SmppProvider
from budstikke.errors import ConfigurationError


def test_defaults() -> None:
    config = SmppConfig.from_url("smpp://budstikke:secret@smsc.example:2775")

    assert config.host == "smsc.example"
    assert config.port == 2775
    assert config.system_id == "budstikke"
    assert config.password == "secret"
    assert config.tls is False
    assert config.binds == 1
    assert config.window == 10
    assert config.max_rate is None
    assert config.enquire_link_s == 30.0
    assert config.source_ton is None


def test_every_query_parameter() -> None:
    config = SmppConfig.from_url(
        "smpps://id:pw@smsc.example:3550?binds=3&system_type=OTP&window=20&max_rate=50.5"
        "&source_ton=5&source_npi=0&enquire_link_s=15&response_timeout_s=4"
        "&connect_timeout_s=2&reconnect_initial_s=0.1&reconnect_max_s=5&bind_wait_s=1"
        "&throttle_pause_s=0.2&throttle_max_pause_s=2&case_sensitive_ids=true"
        "&receipt_id_base=decimal"
    )

    assert config.tls is True
    assert config.port == 3550
    assert config.binds == 3
    assert config.system_type == "OTP"
    assert config.window == 20
    assert config.max_rate == 50.5
    assert (config.source_ton, config.source_npi) == (5, 0)
    assert config.enquire_link_s == 15.0
    assert config.response_timeout_s == 4.0
    assert config.connect_timeout_s == 2.0
    assert config.reconnect_initial_s == 0.1
    assert config.reconnect_max_s == 5.0
    assert config.bind_wait_s == 1.0
    assert config.throttle_pause_s == 0.2
    assert config.throttle_max_pause_s == 2.0
    assert config.case_sensitive_ids is True
    assert config.receipt_id_base == "decimal"


def test_port_defaults_to_2775() -> None:
    assert SmppConfig.from_url("smpp://id:pw@smsc.example").port == 2775


def test_percent_encoded_credentials() -> None:
    config = SmppConfig.from_url("smpp://my%20id:p%40ss@smsc.example")

    assert config.system_id == "my id"
    assert config.password == "p@ss"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://id:pw@host", "scheme"),
        ("smpp://id:pw@", "no host"),
        ("smpp://:pw@host", "system_id is missing"),
        ("smpp://sixteen_chars_id:pw@host", "system_id is 16"),
        ("smpp://id:ninechars@host", "password is 9"),
        ("smpp://id:pw@host?binds=0", "binds must be"),
        ("smpp://id:pw@host?window=0", "window must be"),
        ("smpp://id:pw@host?window=ten", "whole number"),
        ("smpp://id:pw@host?window=²", "whole number"),
        ("smpp://id:pw@host?max_rate=-1", "greater than 0"),
        ("smpp://id:pw@host?enquire_link_s=nan", "greater than 0"),
        ("smpp://id:pw@host?source_ton=7", "source_ton"),
        ("smpp://id:pw@host?source_npi=2", "source_npi"),
        ("smpp://id:pw@host?colour=blue", "unknown query parameter 'colour'"),
        ("smpp://id:pw@host?binds=1&binds=2", "twice"),
        ("smpp://id:pw@host:99999", "port"),
        ("smpp://id:pw@host?case_sensitive_ids=maybe", "true or false"),
        ("smpp://id:pw@host?receipt_id_base=octal", "receipt_id_base must be one of"),
    ],
)
def test_invalid_url(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        SmppConfig.from_url(url)

    assert caught.value.setting == "BUDSTIKKE_SMS_URL"
    assert "pw@" not in str(caught.value)


def test_password_never_in_repr() -> None:
    provider = SmppProvider.from_url("smpp://budstikke:s3cret@smsc.example:2775")

    assert "s3cret" not in repr(provider)
    assert "s3cret" not in repr(provider.config)
    assert "s3cret" not in provider.config.redacted_url
    assert repr(provider) == "SmppProvider(smpp://budstikke:***@smsc.example:2775, binds=1)"


def test_password_never_in_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        SmppConfig.from_url("smpp://id:s3cret@host?window=x")

    assert "s3cret" not in str(caught.value)
