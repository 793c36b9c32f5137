"""Why a cluster task ended without its run done, and what the summary job says about unfinished runs.

A task (``ser_mtl.runs.cluster.RunTask``) that ends without ``metrics.json`` writes ``RUN/unfinished.json``
(`record_unfinished`): ``reason`` ``out of requeues`` (submitit's signal handler found the task timed out
more often than ``--cv.slurm_max_requeues`` allows and raised ``UncompletedJobError``) or ``failed`` (any other
exception), its ``message``, ``attempt`` (1 + SLURM's restart count), ``job`` and the options that decide a
retry (``time``, ``max_requeues``). `unfinished_line` groups a cv folder's unfinished runs by that reason;
runs without the file were cancelled or never started.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ser_mtl.analysis.summary import METRICS_NAME, SummaryError, read_json, read_record, run_dir_name
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.layout import UNFINISHED

OUT_OF_REQUEUES = "out of requeues"
FAILED = "failed"
NOT_STARTED = "cancelled or never started"


def out_of_requeues(err: BaseException) -> bool:
    """submitit's end of a task that timed out more often than it may be requeued."""
    return type(err).__name__ == "UncompletedJobError" and "timed-out too many times" in str(err)


def record_unfinished(run_dir: Path, err: BaseException, time_limit: str | None, max_requeues: int | None) -> dict:
    """Write (atomically) and return ``run_dir/unfinished.json`` for ``err``, the task's end."""
    record = {"reason": OUT_OF_REQUEUES if out_of_requeues(err) else FAILED,
              "message": " ".join(str(err).split())[:500] or type(err).__name__,
              "attempt": int(os.environ.get("SLURM_RESTART_COUNT") or 0) + 1,
              "job": os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID")),
              "task": os.environ.get("SLURM_ARRAY_TASK_ID"), "time": time_limit, "max_requeues": max_requeues}
    atomic_write_json(run_dir / UNFINISHED, record)
    return record


def _why(run_dir: Path) -> dict[str, Any]:
    path = run_dir / UNFINISHED
    try:
        record = read_json(path) if path.is_file() else None
    except SummaryError:  # damaged: still unfinished, reason unknown
        record = None
    return record if isinstance(record, dict) and record.get("reason") else {"reason": NOT_STARTED}


def _shown(names: list[str]) -> str:
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def unfinished_line(cv_dir: Path) -> str | None:
    """``[cv] DIR: 3 of 8 runs unfinished: 1 out of requeues (...); 1 failed (...); 1 cancelled or never
    started (...)`` with what to change and how to resume, for the runs of ``cv.json``'s grid without
    ``metrics.json``; None when all finished (or no grid is recorded)."""
    grid = (read_record(cv_dir) or {}).get("grid") or {}
    names = [run_dir_name(f, r) for r in grid.get("repeats", []) for f in grid.get("folds", [])]
    missing = [n for n in names if not (cv_dir / n / METRICS_NAME).is_file()]
    if not missing:
        return None
    why = {n: _why(cv_dir / n) for n in missing}
    parts = []
    requeued = [n for n in missing if why[n]["reason"] == OUT_OF_REQUEUES]
    if requeued:
        first = why[requeued[0]]
        parts.append(f"{len(requeued)} out of requeues ({_shown(requeued)}): each attempt reached the time limit "
                     f"(--cv.slurm_time {first.get('time')}) and {first.get('attempt')} attempts were allowed "
                     f"(--cv.slurm_max_requeues {first.get('max_requeues')}); submit again with a longer "
                     "--cv.slurm_time or more --cv.slurm_max_requeues")
    failed = [n for n in missing if why[n]["reason"] == FAILED]
    if failed:
        parts.append(f"{len(failed)} failed ({_shown(failed)}; {failed[0]}: {why[failed[0]]['message'][:200]})")
    others = [n for n in missing if why[n]["reason"] not in (OUT_OF_REQUEUES, FAILED)]
    if others:
        parts.append(f"{len(others)} {NOT_STARTED} ({_shown(others)})")
    return (f"[cv] {cv_dir}: {len(missing)} of {len(names)} runs unfinished: {'; '.join(parts)}. Their task logs "
            f"are in {cv_dir / 'slurm'} (and fit.log/test.log in the run folders). Submit the same command again "
            "to resume them: finished runs are skipped, the others go on from last.ckpt")
