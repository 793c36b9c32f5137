"""``ser-mtl aggregate DIR...``: summaries of cv folders, and of a sweep's settings plus its selection."""

from __future__ import annotations

import sys
from pathlib import Path

from ser_mtl.analysis.selection import SELECTED_NAME, select_on_validation
from ser_mtl.analysis.summary import METRICS_NAME, SWEEP_NAME, SummaryError, aggregate
from ser_mtl.command_line import command, run_function


@command(positional="dirs", errors=(SummaryError,))
def aggregate_main(dirs: list[str]) -> None:
    """Summarise the finished runs (DIR/*/metrics.json) of cross-validation folders into DIR/summary.json.

    A folder without runs of its own but with run folders one level down (a sweep) has each of those
    aggregated; a sweep (``sweep.json``) also gets its ``selected/`` folder rewritten (``ser_mtl.analysis.selection``).

    Args:
        dirs: cv folders (``--cv.out``), or sweep folders holding them.
    """
    for item in dirs:
        path = Path(item)
        if any(path.glob(f"*/{METRICS_NAME}")) or not any(path.glob(f"*/*/{METRICS_NAME}")):
            aggregate(item)
            continue
        for child in sorted(p for p in path.iterdir() if p.name != SELECTED_NAME and any(p.glob(f"*/{METRICS_NAME}"))):
            aggregate(str(child))
        if (path / SWEEP_NAME).is_file():
            select_on_validation(path)


if __name__ == "__main__":
    run_function(aggregate_main, sys.argv[1:], "ser-mtl aggregate")
