"""`fit_pack`: the fits of K (fold, repeat) runs of a cross-validation in one packed process.

For each run the configuration is built exactly as the cv runner's ``ser-mtl fit`` child builds it
(``ser_mtl/experiments/cv.py``: the config arguments plus ``--data.fold``, ``--seed_everything`` and
``--trainer.default_root_dir``), through `ser_mtl.lightning_cli.run_lightning_cli` with ``run=False``:
so each run's model is initialised under its own seed as in its unpacked fit, its datamodule is its
fold's, and ``max_epochs`` and the ``lr_schedule`` settings come from the same config. The K runs are
then trained together by `ser_mtl.models.packed_training.train_pack`, which leaves each run folder
with ``checkpoints/best.ckpt``, ``checkpoints/last.ckpt`` and ``packed_fit.json``; ``fit_done.json``
is written last, as the cv runner does after a fit, so the runner's test stage (``ser-mtl test
--ckpt_path best.ckpt`` -> ``test_metrics.json`` -> ``metrics.json``) follows unchanged.

Resumption: the child keeps the whole pack's state in ``pack_state.pt`` beside ``PACK.json``
(`ser_mtl.models.packed_resume`, written after every epoch), and a child started on the same
``PACK.json`` resumes from it: killed at any moment, a pack loses at most the epoch in progress. On
SIGUSR1 (SLURM's warning before the time limit, ``--signal=SIGUSR1@90``) the child saves the state
after the batch in progress, asks SLURM to requeue the task (``scontrol requeue``, as Lightning's
SLURM plugin does for an unpacked fit) and exits; the requeued task resumes with that epoch's
remaining batches. The state file is removed once every run of the pack has ``fit_done.json``.

Child entry point (what ``ser-mtl cv --cv.pack K`` runs, ``ser_mtl/experiments/cv_pack.py``)::

    python -m ser_mtl.experiments.stages ser_mtl.experiments.pack_runner pack_fit PACK.json
    python -m ser_mtl.experiments.pack_runner pack_fit PACK.json      # the same, by hand

``PACK.json``: ``{"config_args": [...], "runs": [{"fold", "seed", "run_dir", "args"}]}``; ``args`` are
the run's own arguments before the runner's (``["--model.init_from", CKPT]`` with ``--cv.pretrain``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser_mtl.callbacks import RestoreBestHalveLR
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.lightning_cli import run_lightning_cli
from ser_mtl.models.init_from import load_matching_weights
from ser_mtl.models.packed_resume import STATE_NAME, PackStateError, read_pack_state
from ser_mtl.models.packed_training import PackInterrupted, RunSpec, train_pack

SCHEDULE_KEYS = ("monitor", "mode", "patience", "factor", "min_lr", "min_delta", "restore_optimizer_state",
                 "restore_best_on_train_end")


PACK_STAGE = "pack_fit"


def pack_device(accelerator: str) -> str:
    """Where a pack trains: ``cpu`` for ``trainer.accelerator: cpu``, else ``cuda`` when this process sees a
    GPU (the cv job's ``CUDA_VISIBLE_DEVICES``), else ``cpu``; ``gpu``/``cuda`` without a GPU is an error."""
    import torch

    accelerator = str(accelerator).lower()
    if accelerator == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if accelerator in ("gpu", "cuda"):
        raise ValueError(f"fit_pack: trainer.accelerator is {accelerator} but this process sees no GPU")
    return "cpu"


def pack_spec(config_args: Sequence[str], runs: Sequence[tuple]) -> dict[str, Any]:
    """What identifies a pack in its resume state: the config arguments and every run's fold, seed, folder
    and own arguments (the content of ``PACK.json``)."""
    return {"config_args": [str(a) for a in config_args],
            "runs": [[int(fold), int(seed), str(run_dir), [str(a) for a in (rest[0] if rest else [])]]
                     for fold, seed, run_dir, *rest in runs]}


def fit_pack(config_args: Sequence[str], runs: Sequence[tuple], device: str | None = None,
             state_path: str | Path | None = None, interrupt: Any = None) -> list[dict[str, Any]]:
    """Fit the runs ``(fold, seed, run_dir)`` or ``(fold, seed, run_dir, run_args)`` of one config together;
    returns `train_pack`'s per-run results. ``run_args`` come after ``config_args`` and before the
    runner's arguments, as in the cv runner's ``ser-mtl fit`` (e.g. ``["--model.init_from", CKPT]``).

    ``device`` defaults to `pack_device` of the config's ``trainer.accelerator``. ``state_path``: the pack's
    resume state (resumed from if it is this pack's, written every epoch, removed at the end); ``interrupt``:
    polled after every batch, True saves the state and raises `PackInterrupted` (`train_pack`).
    """
    if not runs:
        raise ValueError("fit_pack: no runs to fit")
    if state_path is not None:  # a state that cannot be resumed is refused before anything is built
        read_pack_state(state_path, pack_spec(config_args, runs))
    clis = []
    for fold, seed, run_dir, *rest in runs:
        args = [*config_args, *(rest[0] if rest else []), "--data.fold", str(fold), "--seed_everything", str(seed),
                "--trainer.default_root_dir", str(run_dir)]
        clis.append(run_lightning_cli(args, run=False))  # seeds, then builds the model: its unpacked init
    schedules = [[cb for cb in cli.trainer.callbacks if isinstance(cb, RestoreBestHalveLR)] for cli in clis]
    if any(len(s) != 1 for s in schedules):
        raise ValueError("fit_pack: every run's config must have exactly one lr_schedule (RestoreBestHalveLR)")
    schedule = {key: getattr(schedules[0][0], key) for key in SCHEDULE_KEYS}
    epochs = {cli.trainer.max_epochs for cli in clis}
    if len(epochs) != 1 or None in epochs or -1 in epochs:
        raise ValueError(f"fit_pack: packed runs need one finite trainer.max_epochs, got {sorted(map(str, epochs))}")
    if device is None:
        device = pack_device(clis[0].config.get("trainer.accelerator", "auto"))
    print(f"[pack] {len(runs)} runs on {device}: " + ", ".join(Path(r[2]).name for r in runs), flush=True)
    models = []
    for cli in clis:
        if cli.model.hparams.init_from:
            load_matching_weights(cli.model, cli.model.hparams.init_from)
        models.append(cli.model)
    specs = [RunSpec(run[1], run[2]) for run in runs]
    resumed = str(state_path) if state_path is not None and Path(state_path).exists() else None
    results = train_pack(specs, [cli.datamodule for cli in clis], epochs.pop(), schedule, device, models,
                         state_path=state_path, identity=pack_spec(config_args, runs), interrupt=interrupt)
    for run, result in zip(runs, results):
        atomic_write_json(Path(run[2]) / "fit_done.json", {"resumed_from": resumed, "packed": True, **result})
        stop = "ran every epoch" if result["stop_epoch"] is None else f"stopped at epoch {result['stop_epoch']}"
        print(f"[pack] {Path(run[2]).name}: best val/ua {result['best_score']} at epoch {result['best_epoch']}, {stop}"
              + (" (DIVERGED)" if result["diverged"] else ""), flush=True)
    if state_path is not None:
        Path(state_path).unlink(missing_ok=True)  # every run has its fit_done.json: nothing left to resume
    return results


def read_pack_spec(path: str | Path) -> tuple[list[str], list[tuple]]:
    """``PACK.json`` (module docstring) as ``fit_pack``'s ``(config_args, runs)``; ValueError naming the file."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        runs = [(int(r["fold"]), int(r["seed"]), str(r["run_dir"]), [str(a) for a in r.get("args", [])])
                for r in spec["runs"]]
        return [str(a) for a in spec["config_args"]], runs
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a pack spec ({{'config_args': [...], 'runs': [{{'fold', 'seed', "
                         f"'run_dir', 'args'}}]}}): {err!r}") from err


def requeue_slurm_task() -> str:
    """``scontrol requeue`` this SLURM task (an array task as ``JOB_TASK``), as Lightning's SLURM plugin
    does; returns what happened, for the log."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return "not a SLURM job: re-run the same command to resume"
    try:
        code = subprocess.call(["scontrol", "requeue", job])
    except FileNotFoundError:
        return f"scontrol not found: requeue SLURM job {job} by hand (or resubmit its task) to resume"
    return f"requeued SLURM job {job}" if code == 0 else f"scontrol requeue {job} failed (exit {code}): resubmit it"


def main(argv: Sequence[str]) -> None:
    """``pack_fit PACK.json``: fit (or resume) the pack the file describes (what ``stages`` runs in the
    pack's child); SIGUSR1 saves the pack after the batch in progress, requeues a SLURM task and exits 1."""
    if len(argv) != 2 or argv[0] != PACK_STAGE:
        raise SystemExit(f"usage: python -m ser_mtl.experiments.pack_runner {PACK_STAGE} PACK.json (got {list(argv)})")
    config_args, runs = read_pack_spec(argv[1])
    state_path = Path(argv[1]).parent / STATE_NAME
    warned = threading.Event()
    usr1 = getattr(signal, "SIGUSR1", None)
    handle = usr1 is not None and threading.current_thread() is threading.main_thread()
    previous = signal.signal(usr1, lambda *_: warned.set()) if handle else None
    try:
        fit_pack(config_args, runs, state_path=state_path, interrupt=warned.is_set)
    except PackInterrupted as err:
        raise SystemExit(f"[pack] SIGUSR1: {err}; {requeue_slurm_task()}") from None
    except PackStateError as err:
        raise SystemExit(f"[pack] {err}") from None
    finally:
        if handle:
            signal.signal(usr1, previous)


if __name__ == "__main__":
    main(sys.argv[1:])
