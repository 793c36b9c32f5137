"""The README's "Reproducing the paper" commands, as a user's shell runs them.

`runbook_block` cuts the section's bash block out of README.md; `recorded_commands` runs it with bash
(variables, loops and quoting exactly as a user's shell treats them) with ``ser-mtl`` defined as a shell
function that records each call's arguments and the README line it came from instead of running it.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Reproducing the paper"

RECORDER = r'''
ser-mtl() {
  { printf '%s\n' "${BASH_LINENO[0]}"; printf '%s\0' "$@"; printf '\n\x1e\n'; } >> "$RUNBOOK_LOG"
}
'''


@dataclass(frozen=True)
class Command:
    line: int  # line of the block (1-based) the call was made from
    argv: tuple[str, ...]  # arguments after `ser-mtl`

    @property
    def subcommand(self) -> str:
        return self.argv[0]


def runbook_block(readme: Path = README) -> tuple[str, int]:
    """The first ```bash block after the section heading, and the README line it starts on."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION)
    match = re.compile(r"```bash\n(.*?)```", re.DOTALL).search(text, start)
    if match is None:
        raise AssertionError(f"{readme}: no ```bash block after {SECTION!r}")
    return match.group(1), text[:match.start(1)].count("\n") + 1


def recorded_commands(env: dict[str, str], log: Path, readme: Path = README) -> list[Command]:
    """Every `ser-mtl` call the block makes, in order, with the block's variables taken from ``env``."""
    block, _ = runbook_block(readme)
    log.unlink(missing_ok=True)
    script = "set -euo pipefail\n" + RECORDER + block
    subprocess.run(["bash", "-c", script], check=True, env={**os.environ, **env, "RUNBOOK_LOG": str(log)},
                   cwd=readme.parent)
    commands = []
    for entry in log.read_text(encoding="utf-8").split("\n\x1e\n"):
        if not entry.strip():
            continue
        line, _, args = entry.partition("\n")
        argv = tuple(args.split("\0")[:-1])
        commands.append(Command(int(line) - RECORDER.count("\n") - 1, argv))
    return commands
