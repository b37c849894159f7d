"""The `budstikke limits` and `budstikke purge` commands, run as the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.api.servers import cli_environment, run_cli


def test_limits_set_show_and_reset(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data", rate_limit_per_s="50")

    changed = run_cli(
        "limits",
        "set",
        "--creator",
        "ttd",
        "--burst",
        "20",
        "--sms-countries",
        "+47, 46",
        "--sensitive-guard",
        "off",
        "--per-recipient-day",
        "0",
        environment=environment,
    )
    reset = run_cli(
        "limits", "set", "--creator", "ttd", "--reset", "burst", environment=environment
    )
    shown = run_cli("limits", "show", "--creator", "ttd", environment=environment)
    other = run_cli("limits", "show", "--creator", "digdir", environment=environment)

    assert changed.returncode == 0, changed.stderr
    assert "burst                      20 orders  [set for this creator]" in changed.stdout
    assert reset.returncode == 0, reset.stderr
    lines = shown.stdout.splitlines()
    assert "rate                       50 new orders/s  [default]" in lines
    assert "burst                      200 orders  [default]" in lines
    assert "per recipient, 24 hours    no limit  [set for this creator]" in lines
    assert "SMS countries              46,47 (+46, +47)  [set for this creator]" in lines
    assert "sensitive content guard    off  [set for this creator]" in lines
    assert "SMS countries              47 (+47)  [default]" in other.stdout.splitlines()


def test_limits_set_rejects_bad_values(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")

    country = run_cli(
        "limits", "set", "--creator", "ttd", "--sms-countries", "47,999", environment=environment
    )
    nothing = run_cli("limits", "set", "--creator", "ttd", environment=environment)
    both = run_cli(
        "limits",
        "set",
        "--creator",
        "ttd",
        "--burst",
        "5",
        "--reset",
        "burst",
        environment=environment,
    )

    assert country.returncode == 2
    assert "+999 is not an assigned country calling code" in country.stderr
    assert nothing.returncode == 2
    assert "give at least one limit to change" in nothing.stderr
    assert both.returncode == 2
    assert "--burst is both given and reset" in both.stderr


def test_purge_counts_and_rejects_bad_age(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")

    dry_run = run_cli("purge", "--older-than", "90d", "--dry-run", environment=environment)
    purged = run_cli("purge", "--older-than", "90d", environment=environment)
    bad_age = run_cli("purge", "--older-than", "90 days", environment=environment)

    assert dry_run.returncode == 0, dry_run.stderr
    assert dry_run.stdout.startswith("would remove 0 orders and 0 notifications created before ")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("removed 0 orders")
    assert bad_age.returncode == 2
    assert "for example 90d" in bad_age.stderr
