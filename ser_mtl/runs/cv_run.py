"""One (fold, repeat) run of the cross-validation: its seed and folder, its record, fit + test with resume.

`run_one` is what ``ser_mtl.runs.cv.run_cv`` does per run (and ``ser_mtl.experiments.cv_pack``
after a packed fit): skip a finished run (``metrics.json``), take the run's lock, write or check
``run.json``, fit (resuming from the newest checkpoint) unless ``fit_done.json`` says it is done, test
``best.ckpt`` and write ``metrics.json`` last. The layout and the resume rules are in cv.py's docstring.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser_mtl.experiments.cv_pack import PACK_MARK
from ser_mtl.runs.cv_record import CVError
from ser_mtl.runs.pretrain_stage import pretrained_init
from ser_mtl.runs.stages import CVBackend, RunFailed, run_lock
from ser_mtl.analysis.summary import (
    METRICS,
    METRICS_NAME,
    SummaryError,
    check_scores,
    read_json,
    read_run_metrics,
)
from ser_mtl.io_utils import atomic_write_json

# What metrics.json copies from test_metrics.json besides the scores (METRICS), and how the log names them.
RUN_COUNTS = ("n_utterances", "n_gender_utterances", "n_speaker_utterances")
SCORE_LABELS = (("WA", "wa"), ("UA", "ua"), ("gender", "gender_acc"), ("speaker", "speaker_acc"), ("EER", "eer"))

# ------------------------------------------------------------------------------------ the protocol
def derive_seed(base_seed: int, fold: int, repeat: int) -> int:
    """A seed for run (fold, repeat): numpy's SeedSequence hash of the three numbers, in [0, 2**31).

    Deterministic across machines and numpy versions, and no two (base, fold, repeat) collide the
    way ``base + 1000 * repeat + fold`` would (base 0 repeat 1 == base 1000 repeat 0).
    """
    if min(base_seed, fold, repeat) < 0:
        raise ValueError(f"base seed, fold and repeat must be >= 0, got {base_seed}, {fold}, {repeat}")
    return int(np.random.SeedSequence([base_seed, fold, repeat]).generate_state(1)[0]) & 0x7FFFFFFF


def task_grid(folds: list[int], repeats: int) -> list[tuple[int, int]]:
    """(fold, repeat) of each task id, repeat-major: whole repeats finish first under a throttled array."""
    return [(fold, rep) for rep in range(repeats) for fold in folds]


def run_dir_name(fold: int, repeat: int) -> str:
    return f"fold{fold}_rep{repeat}"


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a resumed fit starts from: the newer of ``last.ckpt`` and Lightning's HPC one.

    Lightning's SLURM signal handler saves ``hpc_ckpt_N.ckpt`` in the run folder when the job is
    about to be preempted; it is newer than the epoch-end ``last.ckpt``. Passing it explicitly as
    ``--ckpt_path`` is needed because an explicit path disables Lightning's own HPC lookup.
    """
    candidates = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def _is_rank_zero() -> bool:
    # Under `srun --ntasks-per-node=G` every rank runs this runner; only rank 0 writes run files.
    return os.environ.get("SLURM_PROCID", "0") == "0"


def _check_test_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunFailed(f"test finished but wrote no {path} (expected by the CLI contract)")
    try:
        return check_scores(path, read_json(path), lenient_eer=True)
    except SummaryError as err:  # a failed run with its message, not a traceback
        raise RunFailed(str(err)) from err


@dataclass
class RunResult:
    fold: int
    repeat: int
    status: str  # "skipped" | "done" | "failed"
    metrics: dict[str, Any] | None = None
    error: str | None = None


def run_one(backend: CVBackend, config_args: list[str], out: Path, fold: int, repeat: int,
            base_seed: int) -> RunResult:
    """Fit + test one (fold, repeat) in ``out/fold{fold}_rep{repeat}``, resuming whatever is done.

    Status ``skipped`` (finished before), ``busy`` (another process holds the run's lock) or ``done``.
    """
    run_dir = (out / run_dir_name(fold, repeat)).absolute()
    metrics_path = run_dir / METRICS_NAME
    if metrics_path.exists():
        return RunResult(fold, repeat, "skipped", read_run_metrics(metrics_path))
    run_dir.mkdir(parents=True, exist_ok=True)
    rank_zero = _is_rank_zero()
    with run_lock(run_dir) if rank_zero else contextlib.nullcontext(True) as acquired:
        if not acquired:
            _say(f"fold {fold} repeat {repeat}: running in another process ({run_dir / '.lock'}); left to it")
            return RunResult(fold, repeat, "busy")
        if metrics_path.exists():  # finished by that other process just before we took the lock
            return RunResult(fold, repeat, "skipped", read_run_metrics(metrics_path))
        return _fit_and_test(backend, config_args, run_dir, fold, repeat, base_seed, rank_zero)


def prepare_run(config_args: list[str], run_dir: Path, fold: int, repeat: int, base_seed: int,
                rank_zero: bool) -> tuple[dict[str, Any], list[str]]:
    """Run (fold, repeat)'s record (run.json: fold, repeat, seed, init_from), written or checked, and the
    ``ser-mtl fit``/``test`` arguments of its stages. ``RunFailed`` while its pretraining is unfinished."""
    seed = derive_seed(base_seed, fold, repeat)
    record: dict[str, Any] = {"fold": fold, "repeat": repeat, "seed": seed}
    init = pretrained_init(run_dir.parent, repeat)  # RunFailed while that pretraining is unfinished
    if init is not None:
        record["init_from"] = str(init)
    run_json = run_dir / "run.json"
    if run_json.exists():
        previous = read_json(run_json)
        if {k: previous.get(k) for k in record} != record:
            raise CVError(f"{run_json} records {previous} but this run is {record}; was --cv.base_seed "
                          "changed? Use another --cv.out")
    elif rank_zero:
        atomic_write_json(run_json, record)

    args = [*config_args, *(["--model.init_from", str(init)] if init is not None else []), "--data.fold", str(fold),
            "--seed_everything", str(seed), "--trainer.default_root_dir", str(run_dir)]
    return record, args


def _fit_and_test(backend: CVBackend, config_args: list[str], run_dir: Path, fold: int, repeat: int,
                  base_seed: int, rank_zero: bool) -> RunResult:
    metrics_path = run_dir / METRICS_NAME
    record, args = prepare_run(config_args, run_dir, fold, repeat, base_seed, rank_zero)
    seed = record["seed"]
    best = run_dir / "checkpoints" / "best.ckpt"
    if not (run_dir / "fit_done.json").exists():
        resume = newest_checkpoint(run_dir) if not (run_dir / PACK_MARK).exists() else None
        if rank_zero:  # an unfinished packed fit restarts from scratch (its checkpoints cannot resume a fit)
            (run_dir / PACK_MARK).unlink(missing_ok=True)
        _say(f"fold {fold} repeat {repeat} (seed {seed}): fit"
             + (f", resuming from {resume.name}" if resume else "") + f"  [log {run_dir / 'fit.log'}]")
        backend.run_stage("fit", args + (["--ckpt_path", str(resume)] if resume else []), run_dir)
        if not best.is_file():
            raise RunFailed(f"fit finished but {best} is missing (the CLI must save best.ckpt)")
        if rank_zero:
            atomic_write_json(run_dir / "fit_done.json", {"resumed_from": str(resume) if resume else None})

    test_metrics = run_dir / "test_metrics.json"
    if rank_zero and test_metrics.exists():
        test_metrics.unlink()  # a stale file from an interrupted test must not pass for this one
    _say(f"fold {fold} repeat {repeat}: test {best.name}")
    backend.run_stage("test", args + ["--ckpt_path", str(best)], run_dir)
    if not rank_zero:
        return RunResult(fold, repeat, "done")
    tested = _check_test_metrics(test_metrics)
    metrics = dict(record)
    for key in (*METRICS, *RUN_COUNTS, "classes", "confmat"):
        if tested.get(key) is not None:
            metrics[key] = tested[key]
    atomic_write_json(metrics_path, metrics)
    scores = [(label, key) for label, key in SCORE_LABELS if key in metrics]
    _say(f"fold {fold} repeat {repeat}: " + "  ".join(f"{label} {100 * metrics[key]:.1f} %" for label, key in scores))
    return RunResult(fold, repeat, "done", metrics)


def _say(text: str) -> None:
    sys.stdout.write(f"[cv] {text}\n")  # one write: lines of parallel jobs do not run together
    sys.stdout.flush()
