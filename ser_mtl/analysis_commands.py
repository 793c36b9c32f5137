"""The analysis commands of ``ser-mtl``: ``aggregate`` (summaries of cv and sweep folders), ``compare``
(paired differences with tests) and ``report`` (Markdown tables and figures). They live with the command
line; the library under ``ser_mtl/analysis/`` does not import it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ser_mtl.analysis.compare import compare_dirs, format_comparison
from ser_mtl.analysis.report import report
from ser_mtl.analysis.selection import SELECTED_NAME, select_on_validation
from ser_mtl.analysis.summary import METRICS_NAME, SWEEP_NAME, SummaryError, aggregate
from ser_mtl.command_line import command
from ser_mtl.io_utils import atomic_write_json


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


@command(positional="dirs", errors=(SummaryError,))
def compare_main(dirs: list[str], out: str | None = None, metric: str = "auto",
                 allow_mismatch: list[str] | None = None) -> dict[str, Any]:
    """Paired comparison of cross-validations: each later folder minus the first, over matching (fold, repeat) runs.

    Prints mean differences, 95 % t intervals, Wilcoxon and sign-flip p-values, per repeat and per run.

    Args:
        dirs: cv folders (DIR/*/metrics.json); the first is the reference.
        out: also write the full result (pairs, intervals, p-values) to this JSON file.
        metric: the metric the verdict is about: auto (ua where the runs have it, else ccc_mean), or a score of
            ser_mtl/tasks.py: ua, wa, macro_f1, ccc_activation, ccc_valence, ccc_dominance, ccc_mean, eer,
            gender_acc, speaker_acc, age_mae.
        allow_mismatch: cv.json settings that may differ from the first folder's (else refused): data.corpus,
            data.task, data.scheme, data.target_corpus, data.seed, base_seed.
    """
    result = compare_dirs(list(dirs), metric, allow_mismatch)
    print(format_comparison(result))
    if out:
        atomic_write_json(out, result)
        print(f"[compare] {out}")
    return result


@command(positional="dirs", errors=(SummaryError,))
def report_main(dirs: list[str], out: str = "report") -> None:
    """Markdown tables and PNG figures (``OUT/report.md``) from cv and sweep folders.

    Args:
        dirs: cv folders, sweep folders, or folders holding them.
        out: output folder for report.md and the PNG figures.
    """
    report(dirs, out)
