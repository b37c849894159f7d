"""`budstikke apikey revoke` by id, by the key itself and by its prefix, run as the real CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.api.servers import cli_environment, create_api_key_with_cli, run_cli


def key_prefix(key: str) -> str:
    return key.split("_")[1]


def key_states(data_dir: Path) -> dict[str, bool]:
    """Return whether each stored key is revoked, by prefix."""
    with sqlite3.connect(data_dir / "budstikke.db") as connection:
        rows = connection.execute("SELECT prefix, revoked_at FROM api_keys").fetchall()
    return {prefix: revoked_at is not None for prefix, revoked_at in rows}


def test_revoke_by_whole_key(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    leaked = create_api_key_with_cli(environment)
    kept = create_api_key_with_cli(environment)

    revoked = run_cli("apikey", "revoke", leaked, environment=environment)

    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith("revoked ")
    assert key_states(tmp_path / "data") == {key_prefix(leaked): True, key_prefix(kept): False}


def test_revoke_by_shown_prefix(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    first = create_api_key_with_cli(environment)
    second = create_api_key_with_cli(environment)

    shown = run_cli("apikey", "revoke", f"bsk_{key_prefix(first)}...", environment=environment)
    bare = run_cli("apikey", "revoke", key_prefix(second)[:6], environment=environment)
    again = run_cli("apikey", "revoke", key_prefix(first), environment=environment)

    assert shown.returncode == 0, shown.stderr
    assert bare.returncode == 0, bare.stderr
    assert key_states(tmp_path / "data") == {key_prefix(first): True, key_prefix(second): True}
    assert again.returncode == 1
    assert f"no active API key has a prefix starting with {key_prefix(first)}" in again.stderr
    assert "already revoked" in again.stderr


def test_revoke_rejects_ambiguous_and_wrong_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    environment = cli_environment(data_dir)
    first = create_api_key_with_cli(environment)
    second = create_api_key_with_cli(environment)
    # Two prefixes that share their first 8 characters, which random prefixes rarely do.
    with sqlite3.connect(data_dir / "budstikke.db") as connection:
        connection.execute(
            "UPDATE api_keys SET prefix = ? WHERE prefix = ?", ("abcd12340001", key_prefix(first))
        )
        connection.execute(
            "UPDATE api_keys SET prefix = ? WHERE prefix = ?", ("abcd12340002", key_prefix(second))
        )
    forged = f"bsk_abcd12340001_{second.split('_', 2)[2]}"

    several = run_cli("apikey", "revoke", "bsk_abcd1234", environment=environment)
    wrong_secret = run_cli("apikey", "revoke", forged, environment=environment)
    unknown = run_cli("apikey", "revoke", "ffff0000", environment=environment)
    malformed = run_cli("apikey", "revoke", "not-a-key", environment=environment)

    assert several.returncode == 1
    assert "2 active API keys have a prefix starting with abcd1234" in several.stderr
    assert "give the whole prefix or the id" in several.stderr
    assert wrong_secret.returncode == 1
    assert "the key does not match the stored key with prefix abcd12340001" in wrong_secret.stderr
    assert unknown.returncode == 1
    assert "no active API key has a prefix starting with ffff0000" in unknown.stderr
    assert malformed.returncode == 2
    assert "'not-a-key' is not a key id, a key or a key prefix" in malformed.stderr
    assert key_states(data_dir) == {"abcd12340001": False, "abcd12340002": False}
