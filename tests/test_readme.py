"""The README's shell commands run as written from a fresh clone after `make`: every command is a
make target, a shell builtin, an installed tool, or a program the project installs into `.venv/bin`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
VENV_BIN = Path(sys.executable).parent
# Programs the README expects from the machine (PostgreSQL's client, the AWS CLI) or the shell.
EXTERNAL = {"make", "export", "source", "createdb", "aws"}


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_readme_command_exists_after_make():
    """`tenant-provisioner init` failed unless the virtualenv was on PATH."""
    commands = _commands()
    assert commands
    for command in commands:
        program = command.split()[0]
        if program in EXTERNAL:
            continue
        assert program.startswith(".venv/bin/"), f"{command!r}: runs only with the virtualenv on PATH"
        assert (VENV_BIN / program.removeprefix(".venv/bin/")).exists(), f"{command!r}: not installed by make"
