"""The `budstikke limits` and `budstikke purge` commands, run as the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.api.servers import cli_environment, create_api_key_with_cli, run_cli


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


def test_limits_set_warns_without_key(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    key = create_api_key_with_cli(environment, creator="ttd")

    misspelt = run_cli(
        "limits", "set", "--creator", "tdd", "--burst", "20", environment=environment
    )
    shown = run_cli("limits", "show", "--creator", "tdd", environment=environment)
    with_key = run_cli(
        "limits", "set", "--creator", "ttd", "--burst", "20", environment=environment
    )
    revoked = run_cli("apikey", "revoke", key, environment=environment)
    after_revoke = run_cli(
        "limits", "set", "--creator", "ttd", "--burst", "30", environment=environment
    )

    assert misspelt.returncode == 0, misspelt.stderr
    assert "warning: no active API key exists for creator 'tdd' yet" in misspelt.stderr
    assert "`budstikke apikey create --creator tdd`" in misspelt.stderr
    assert "warning" not in misspelt.stdout
    assert "burst                      20 orders  [set for this creator]" in shown.stdout
    assert with_key.returncode == 0, with_key.stderr
    assert "warning" not in with_key.stderr
    assert revoked.returncode == 0, revoked.stderr
    assert "warning: no active API key exists for creator 'ttd' yet" in after_revoke.stderr


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


def test_limits_set_rejects_bad_rates(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data", rate_limit_per_s="50")

    results = {
        rate: run_cli("limits", "set", "--creator", "ttd", "--rate", rate, environment=environment)
        for rate in ("nan", "inf", "-1", "1e400", "fast", "0")
    }
    shown = run_cli("limits", "show", "--creator", "ttd", environment=environment)

    for rate in ("nan", "inf", "-1", "1e400", "fast"):
        assert results[rate].returncode == 2, rate
        assert f"'{rate}' is not a rate; give a positive number" in results[rate].stderr, rate
    assert results["0"].returncode == 2
    assert "a rate of 0 means no limit; give none to remove the limit" in results["0"].stderr
    assert "rate                       50 new orders/s  [default]" in shown.stdout.splitlines()


def test_limits_set_rate_none_removes_limit(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data", rate_limit_per_s="50")

    unlimited = run_cli(
        "limits", "set", "--creator", "ttd", "--rate", "none", environment=environment
    )
    slow = run_cli("limits", "set", "--creator", "ttd", "--rate", "0.5", environment=environment)

    assert unlimited.returncode == 0, unlimited.stderr
    assert "rate                       no limit  [set for this creator]" in unlimited.stdout
    assert slow.returncode == 0, slow.stderr
    assert "rate                       0.5 new orders/s  [set for this creator]" in slow.stdout


def test_limits_set_sms_countries_none(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")

    empty = run_cli(
        "limits", "set", "--creator", "ttd", "--sms-countries", "", environment=environment
    )
    commas = run_cli(
        "limits", "set", "--creator", "ttd", "--sms-countries", " , ", environment=environment
    )
    blocked = run_cli(
        "limits", "set", "--creator", "ttd", "--sms-countries", "none", environment=environment
    )
    shown = run_cli("limits", "show", "--creator", "ttd", environment=environment)

    assert empty.returncode == 2
    assert "'' lists no country calling code" in empty.stderr
    assert "or none to reject every SMS of this creator" in empty.stderr
    assert commas.returncode == 2
    assert "' , ' lists no country calling code" in commas.stderr
    assert blocked.returncode == 0, blocked.stderr
    assert "SMS countries              none (no country)  [set for this creator]" in blocked.stdout
    assert "note: every SMS order of ttd is now rejected with 400" in blocked.stderr
    assert "SMS countries              none (no country)  [set for this creator]" in shown.stdout


def test_purge_rejects_ambiguous_minutes(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")

    month = run_cli("purge", "--older-than", "1m", "--dry-run", environment=environment)
    minutes = run_cli("purge", "--older-than", "30min", "--dry-run", environment=environment)

    assert month.returncode == 2
    assert "'1m' is ambiguous: write 1min for minutes" in month.stderr
    assert "units are s, min, h, d (days) or w (weeks)" in month.stderr
    assert minutes.returncode == 0, minutes.stderr
    assert minutes.stdout.startswith("would remove 0 orders")
