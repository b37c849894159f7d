"""Modes of the SQLite database file and the data folder that the real CLI creates."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.servers import cli_environment, run_cli


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 022, under which files are created readable by every user by default."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_database_file_is_private(tmp_path: Path, permissive_umask: None) -> None:
    data_dir = tmp_path / "data"
    environment = cli_environment(data_dir)

    migrated = run_cli("migrate", environment=environment)
    created = run_cli("apikey", "create", "--creator", "ttd", environment=environment)

    assert migrated.returncode == 0, migrated.stderr
    assert created.returncode == 0, created.stderr
    database = data_dir / "budstikke.db"
    assert f"database: {database.resolve()}\n" in created.stderr
    assert file_mode(data_dir) == 0o700
    assert file_mode(database) == 0o600
    assert "readable by other users" not in migrated.stderr
    # SQLite creates the -wal and -shm files with the mode of the database file.
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("UPDATE api_keys SET scopes = scopes")
        connection.commit()
        assert file_mode(data_dir / "budstikke.db-wal") == 0o600
        assert file_mode(data_dir / "budstikke.db-shm") == 0o600


def test_readable_database_file_warned(tmp_path: Path, permissive_umask: None) -> None:
    data_dir = tmp_path / "data"
    environment = cli_environment(data_dir)
    first = run_cli("migrate", environment=environment)
    (data_dir / "budstikke.db").chmod(0o644)

    again = run_cli("migrate", environment=environment)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "SQLite database file is readable by other users" in again.stderr
    assert "chmod 600" in again.stderr
    assert file_mode(data_dir / "budstikke.db") == 0o644
