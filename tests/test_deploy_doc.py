"""docs/deploy.md: its settings file and its commands work as written."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click

from budstikke.channels.smpp.config import SmppConfig
from budstikke.cli import main

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
# A settings line that systemd's EnvironmentFile= and a POSIX shell read alike:
# both take a single-quoted value verbatim (systemd.exec(5), systemd 252).
SINGLE_QUOTED = re.compile(r"(BUDSTIKKE_[A-Z0-9_]+)='([^']*)'")
COMMAND = re.compile(r"/opt/budstikke/bin/budstikke ([^'\n]+)")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def settings_file_lines() -> list[str]:
    [block] = [block for block in code_blocks(DEPLOY.read_text()) if "BUDSTIKKE_SMS_URL=" in block]
    return block.splitlines()


def test_settings_file_sourced_by_shell(tmp_path: Path) -> None:
    lines = settings_file_lines()
    path = tmp_path / "budstikke.env"
    path.write_text("\n".join(lines) + "\n")
    printer = (
        "import json, os; print(json.dumps({name: value for name, value in os.environ.items() "
        "if name.startswith('BUDSTIKKE_')}))"
    )
    source = f"set -a; . {shlex.quote(str(path))}; set +a"
    script = f"{source}; exec {sys.executable} -c {shlex.quote(printer)}"

    result = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=30, check=True, env={}
    )

    expected = {}
    for line in lines:
        match = SINGLE_QUOTED.fullmatch(line)
        assert match is not None, f"not a single-quoted assignment: {line}"
        expected[match.group(1)] = match.group(2)
    assert json.loads(result.stdout) == expected
    sms = SmppConfig.from_url(expected["BUDSTIKKE_SMS_URL"])
    assert sms.binds == 2
    assert sms.window == 10


def test_deploy_commands_parse() -> None:
    commands = [
        shlex.split(match.group(1))
        for block in code_blocks(DEPLOY.read_text())
        for match in COMMAND.finditer(block)
    ]

    assert len(commands) >= 5
    for arguments in commands:
        assert parse_command(arguments), arguments


def parse_command(arguments: list[str]) -> str:
    """Parse a `budstikke` command line as the CLI would and return the subcommand's name.

    Raises click.UsageError for an unknown command or option, or a missing value.
    """
    command: click.Command = main
    name, remaining = "budstikke", list(arguments)
    while True:
        context = command.make_context(name, remaining)
        if not isinstance(command, click.Group):
            return command.name or name
        rest = [*getattr(context, "_protected_args", []), *context.args]
        resolved_name, resolved, remaining = command.resolve_command(context, rest)
        assert resolved is not None, arguments
        command, name = resolved, resolved_name or name
