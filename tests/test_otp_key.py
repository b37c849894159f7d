"""The OTP key: from BUDSTIKKE_OTP_KEY, else a file in the data folder made once with mode 0600.

The database records the key's fingerprint, and an API process with another
key does not start.
"""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from budstikke.api.app import create_app
from budstikke.config import Settings, load_settings
from budstikke.errors import ConfigurationError
from budstikke.otp_key import decode_otp_key, key_fingerprint, load_otp_key
from tests.api.servers import cli_environment, run_cli

FIRST_KEY = "ab" * 32
SECOND_KEY = "cd" * 32


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


def test_fingerprint_differs_per_key() -> None:
    first = key_fingerprint(bytes.fromhex(FIRST_KEY))

    assert first == key_fingerprint(bytes.fromhex(FIRST_KEY))
    assert first != key_fingerprint(bytes.fromhex(SECOND_KEY))
    assert len(first) == 64
    assert FIRST_KEY not in first


async def start_and_stop(settings: Settings) -> None:
    app = create_app(settings, run_workers=False)
    async with app.router.lifespan_context(app):
        pass


async def test_app_with_another_key_does_not_start(settings: Settings) -> None:
    shared = settings.model_copy(update={"database_url": settings.resolved_database_url})
    first = shared.model_copy(update={"otp_key": FIRST_KEY})
    second = shared.model_copy(update={"otp_key": SECOND_KEY})

    await start_and_stop(first)
    with pytest.raises(ConfigurationError) as raised:
        await start_and_stop(second)
    await start_and_stop(first)

    message = str(raised.value)
    assert raised.value.setting == "BUDSTIKKE_OTP_KEY"
    assert message.startswith("BUDSTIKKE_OTP_KEY: the OTP key from BUDSTIKKE_OTP_KEY is not")
    assert "Give every process the same BUDSTIKKE_OTP_KEY" in message
    assert "run `budstikke otp-key rotate`" in message
    assert "\n" not in message
    assert SECOND_KEY not in message
    assert FIRST_KEY not in message


async def test_two_machines_key_files_conflict(settings: Settings, tmp_path: Path) -> None:
    shared = settings.model_copy(update={"database_url": settings.resolved_database_url})
    first = shared.model_copy(update={"data_dir": tmp_path / "machine-1"})
    second = shared.model_copy(update={"data_dir": tmp_path / "machine-2"})

    await start_and_stop(first)
    with pytest.raises(ConfigurationError) as raised:
        await start_and_stop(second)

    path = tmp_path / "machine-2" / "otp.key"
    assert f"the OTP key from the key file {path} (BUDSTIKKE_OTP_KEY is not set)" in str(
        raised.value
    )


def test_rotate_lets_the_new_key_start(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'budstikke.db'}"
    old = cli_environment(tmp_path / "old", database_url=database_url, otp_key=FIRST_KEY)
    new = cli_environment(tmp_path / "new", database_url=database_url, otp_key=SECOND_KEY)

    unrecorded = run_cli("otp-key", "check", environment=new)
    recorded = run_cli("otp-key", "rotate", "--yes", environment=old)
    mismatch = run_cli("otp-key", "check", environment=new)
    refused = run_cli("serve", "--port", "0", "--no-workers", environment=new, timeout_s=60)
    unconfirmed = run_cli("otp-key", "rotate", environment=new)
    rotated = run_cli("otp-key", "rotate", "--yes", environment=new)
    again = run_cli("otp-key", "rotate", "--yes", environment=new)
    new_check = run_cli("otp-key", "check", environment=new)
    old_check = run_cli("otp-key", "check", environment=old)

    assert unrecorded.returncode == 0, unrecorded.stderr
    assert unrecorded.stdout.startswith("no OTP key recorded yet")
    assert recorded.returncode == 0, recorded.stderr
    assert mismatch.returncode == 1
    assert "is not the one recorded on" in mismatch.stderr
    assert refused.returncode == 2
    [line] = refused.stderr.splitlines()
    assert line.startswith("budstikke: configuration error: BUDSTIKKE_OTP_KEY: the OTP key from")
    assert unconfirmed.returncode == 1  # no answer to the question aborts
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout == "recorded the OTP key from BUDSTIKKE_OTP_KEY as the one in use\n"
    assert "nothing changed" in again.stdout
    assert new_check.returncode == 0, new_check.stderr
    assert old_check.returncode == 1
