"""One run folder's life, and the only code that writes it: seed, lock, record, resume, fit, test, results.

Every run goes through `run_folder`: each (fold, repeat) and each pretraining of a cross-validation or
sweep, on this machine (``ser_mtl.runs.local``) or as a cluster task (``ser_mtl.runs.cluster``). It
returns at once when the run is done; takes ``RUN/.lock`` (another holder: ``busy``, left to it);
writes ``run.json`` or refuses a folder that records another run; fits unless ``fit_done.json`` says
it did, from the newest checkpoint; tests ``best.ckpt`` and writes ``metrics.json`` last (with the fit's
``selection`` and ``cost`` from ``fit_record.json``, plus the test's ``test_seconds``, both stages'
``startup_seconds`` and ``shared_by``, how many runs shared the device: `device_share`). Files are written
atomically; under ``srun`` with several ranks only rank 0 locks and writes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_mtl.analysis.summary import (
    METRICS,
    METRICS_NAME,
    SummaryError,
    check_scores,
    read_json,
    read_run_metrics,
)
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.errors import CVError, RunFailed
from ser_mtl.runs.layout import (  # noqa: F401 - FIT_RECORD and pretrain_dir_name are imported from here too
    FIT_DONE,
    FIT_RECORD,
    RUN_RECORD,
    TEST_METRICS,
    best_checkpoint,
    last_checkpoint,
    pretrain_dir_name,
)
from ser_mtl.runs.stages import CVBackend, run_lock
from ser_mtl.tasks import SCORES, TASKS

PRETRAIN_FOLD = 10**6  # stands in for the fold in a pretraining's seed: never a fold run's seed
# What metrics.json copies from test_metrics.json besides the scores, and how the log names the scores.
RUN_COUNTS = ("n_utterances", *(f"n_{task}_utterances" for task in TASKS if task != "emotion"))


def derive_seed(base_seed: int, fold: int, repeat: int) -> int:
    """numpy's SeedSequence hash of the three numbers, in [0, 2**31): the same on every machine, and no
    collisions as with ``base + 1000 * repeat + fold`` (base 0 repeat 1 == base 1000 repeat 0)."""
    if min(base_seed, fold, repeat) < 0:
        raise ValueError(f"base seed, fold and repeat must be >= 0, got {base_seed}, {fold}, {repeat}")
    return int(np.random.SeedSequence([base_seed, fold, repeat]).generate_state(1)[0]) & 0x7FFFFFFF


def is_rank_zero() -> bool:
    """Under ``srun --ntasks-per-node=G`` every rank runs the task; only rank 0 writes run files."""
    return os.environ.get("SLURM_PROCID", "0") == "0"


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newer of ``checkpoints/last.ckpt`` (every epoch) and Lightning's ``hpc_ckpt_N.ckpt`` (its SLURM
    requeue, when a user runs ``ser-mtl fit`` in an sbatch script of their own)."""
    candidates = [last_checkpoint(run_dir), *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


@dataclass(frozen=True)
class Run:
    """One run folder (``dir``, absolute) and what it trains: ``args`` for ``ser-mtl fit``/``test`` (the run
    adds the seed, folder, checkpoint and ``init_from``); ``record``, its ``run.json``; ``name`` in messages;
    ``init_from``, a pretraining's folder whose ``best.ckpt`` it starts from; ``test`` False: fit only."""

    dir: Path
    args: tuple[str, ...]
    record: dict[str, Any] = field(hash=False)
    name: str
    init_from: Path | None = None
    test: bool = True

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    def done(self) -> bool:
        if self.test:
            return (self.dir / METRICS_NAME).exists()
        return (self.dir / FIT_DONE).exists() and best_checkpoint(self.dir).is_file()


@dataclass
class RunResult:
    run: Run
    status: str  # "skipped" (done before) | "done" | "busy" (another process holds it) | "failed"
    metrics: dict[str, Any] | None = None
    error: str | None = None


def run_folder(run: Run, backend: CVBackend) -> RunResult:
    """Bring ``run`` to its done state (module docstring), resuming whatever is already there."""
    if run.done():
        return _skipped(run)
    run.dir.mkdir(parents=True, exist_ok=True)
    rank_zero = is_rank_zero()
    with run_lock(run.dir) if rank_zero else contextlib.nullcontext(True) as acquired:
        if not acquired:
            say(f"{run.name}: running in another process ({run.dir / '.lock'}); left to it")
            return RunResult(run, "busy")
        if run.done():  # finished by that other process just before we took the lock
            return _skipped(run)
        _write_record(run, rank_zero)
        args = [*run.args, *_init_args(run), "--seed_everything", str(run.seed),
                "--trainer.default_root_dir", str(run.dir)]
        best = best_checkpoint(run.dir)
        if not (run.dir / FIT_DONE).exists():
            resume = newest_checkpoint(run.dir)
            log = "" if getattr(backend, "in_process", False) else f"  [log {run.dir / 'fit.log'}]"  # a task's: its own
            say(f"{run.name} (seed {run.seed}): fit" + (f", resuming from {resume.name}" if resume else "") + log)
            backend.run_stage("fit", args + (["--ckpt_path", str(resume)] if resume else []), run.dir)
            if not best.is_file():
                raise RunFailed(f"fit finished but {best} is missing (the CLI must save best.ckpt)")
            if rank_zero:
                atomic_write_json(run.dir / FIT_DONE, {"resumed_from": str(resume) if resume else None,
                                                       "shared_by": device_share(backend)})
        if not run.test:
            return RunResult(run, "done")
        return _test(run, backend, args + ["--ckpt_path", str(best)], rank_zero)


def _skipped(run: Run) -> RunResult:
    return RunResult(run, "skipped", read_run_metrics(run.dir / METRICS_NAME) if run.test else None)


def _write_record(run: Run, rank_zero: bool) -> None:
    path = run.dir / RUN_RECORD
    if path.exists():
        previous = read_json(path)
        if {k: previous.get(k) for k in run.record} != run.record:
            raise CVError(f"{path} records {previous} but this run is {run.record}; was --cv.base_seed or "
                          "the pretraining changed? Use another --cv.out")
    elif rank_zero:
        atomic_write_json(path, run.record)


def _init_args(run: Run) -> list[str]:
    """``--model.init_from`` the pretraining's best.ckpt; `RunFailed` while that pretraining is unfinished."""
    if run.init_from is None:
        return []
    best = best_checkpoint(run.init_from)
    if not ((run.init_from / FIT_DONE).exists() and best.is_file()):
        raise RunFailed(f"its pretraining ({run.init_from.name}) has not finished; see {run.init_from / 'fit.log'}; "
                        "re-run the same command to retry it and this run")
    return ["--model.init_from", str(best)]


def _test(run: Run, backend: CVBackend, args: list[str], rank_zero: bool) -> RunResult:
    test_metrics = run.dir / TEST_METRICS
    if rank_zero:
        test_metrics.unlink(missing_ok=True)  # a stale file from an interrupted test must not pass for this one
    say(f"{run.name}: test best.ckpt")
    start = time.perf_counter()
    backend.run_stage("test", args, run.dir)
    test_seconds = time.perf_counter() - start
    if not rank_zero:
        return RunResult(run, "done")
    if not test_metrics.is_file():
        raise RunFailed(f"test finished but wrote no {test_metrics} (expected by the CLI contract)")
    try:
        tested = check_scores(test_metrics, read_json(test_metrics), lenient_eer=True)
        fit = read_json(run.dir / FIT_RECORD) if (run.dir / FIT_RECORD).is_file() else {}  # FitRecord's output
    except SummaryError as err:  # a failed run with its message, not a traceback
        raise RunFailed(str(err)) from err
    metrics = dict(run.record)
    for key in (*METRICS, *RUN_COUNTS, "classes", "confmat"):
        if tested.get(key) is not None:
            metrics[key] = tested[key]
    metrics.update(selection=fit.get("selection"), cost=run_cost(fit.get("cost"), tested.get("cost"), test_seconds,
                                                                 device_share(backend)))
    atomic_write_json(run.dir / METRICS_NAME, metrics)
    say(f"{run.name}: " + "  ".join(f"{score.label} {score.text(metrics[key])}" for key, score in SCORES.items()
                                    if key in metrics))
    return RunResult(run, "done", metrics)


def device_share(backend: CVBackend) -> int:
    """How many runs share this run's device (``--cv.jobs`` slots on one GPU, or on the CPU): 1 unless the
    backend says (``ser_mtl.runs.local.SlotBackend``)."""
    return int(getattr(backend, "shared_by", 1))


def run_cost(fit: dict[str, Any] | None, test: Any, wall_seconds: float, shared_by: int) -> dict[str, Any]:
    """``metrics.json``'s ``cost``: the fit's (``FitRecord``), the test's seconds and both stages' start-up, as
    the stages measured them (``ser_mtl/stage_clock.py``); a CLI whose test does not time itself counts the
    stage's wall time here (start-up included, none given apart)."""
    test = test if isinstance(test, dict) else {}
    fit = dict(fit or {})
    startups = [x for x in (fit.get("startup_seconds"), test.get("startup_seconds")) if isinstance(x, int | float)]
    seconds = test.get("test_seconds")
    return {**fit, "test_seconds": float(seconds) if isinstance(seconds, int | float) else wall_seconds,
            **({"startup_seconds": float(sum(startups))} if startups else {}), "shared_by": shared_by}


def say(text: str) -> None:
    sys.stdout.write(f"[cv] {text}\n")  # one write: the lines of parallel jobs do not run together
    sys.stdout.flush()
