"""The OTP key: from BUDSTIKKE_OTP_KEY, else a file in the data folder made once with mode 0600."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from budstikke.config import Settings, load_settings
from budstikke.errors import ConfigurationError
from budstikke.otp_key import decode_otp_key, load_otp_key


def test_hex_key_is_decoded() -> None:
    assert decode_otp_key("ab" * 32) == b"\xab" * 32


def test_base64_keys_are_decoded() -> None:
    key = bytes(range(200, 240))
    assert decode_otp_key(base64.b64encode(key).decode()) == key
    assert decode_otp_key(base64.urlsafe_b64encode(key).decode().rstrip("=")) == key


@pytest.mark.parametrize("value", ["ab" * 31, base64.b64encode(bytes(31)).decode(), "not a key!"])
def test_bad_key_names_the_variable_not_the_value(value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        decode_otp_key(value)
    assert raised.value.setting == "BUDSTIKKE_OTP_KEY"
    assert value not in str(raised.value)


def test_load_settings_rejects_a_short_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDSTIKKE_OTP_KEY", "00" * 16)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value).startswith("BUDSTIKKE_OTP_KEY: ")
    assert "00" * 16 not in str(raised.value)


def test_settings_repr_hides_the_key() -> None:
    settings = Settings(otp_key="cd" * 32)
    assert "cd" * 32 not in repr(settings)


def test_setting_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, otp_key="ef" * 32)
    assert load_otp_key(settings) == b"\xef" * 32
    assert not (tmp_path / "otp.key").exists()


def test_key_file_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = load_otp_key(settings)
    path = tmp_path / "data" / "otp.key"
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_otp_key(settings) == first
    assert [p.name for p in path.parent.iterdir()] == ["otp.key"]


def test_bad_key_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "otp.key").write_text("short\n")
    with pytest.raises(ConfigurationError) as raised:
        load_otp_key(Settings(data_dir=tmp_path))
    assert "otp.key" in raised.value.setting
