"""`train_pack`: K fits in one process on one device, each on its own fold's `SERDataModule`.

What one unpacked ``ser-mtl fit`` does per run, here for K runs at once: seed the run
(``seed_everything``: initialisation, batch order), train epochs of its own training batches, validate
on its own validation split (utterance UA, `ser_mtl.models.packed_eval`), apply the restore-best-halve
schedule and early stop (`ser_mtl.models.packed_schedule`), and write ``checkpoints/best.ckpt`` (on each
improvement of the monitored score) and ``checkpoints/last.ckpt`` (every epoch) as ordinary
`MultiTaskAAE` checkpoints (`ser_mtl.models.packed_checkpoint`), which ``ser-mtl test`` and ``ser-mtl
classify`` load. Each run's summary goes to ``<out_dir>/packed_fit.json``.

The K training loaders are walked side by side, one packed step per batch index; where the runs'
batches differ in size (an epoch's last batch) the step is split into one step per size, each
taking only the runs of that size, so that no run ever sees padding in its BatchNorm statistics. A
run whose loader is done waits for the others. A run whose loss becomes non-finite is stopped and
reported (``diverged``), where an unpacked fit would raise.

Resumption (``state_path``): after every epoch's checkpoints the whole pack's state is written to one
file (`ser_mtl.models.packed_resume`), and a call that finds a state of the same pack there goes on
from it, with the same batches and random draws as if it had not been interrupted. ``interrupt``
(polled after every batch, e.g. a SIGUSR1 flag) saves the state after the batch in progress and
raises `PackInterrupted`; the next call resumes with the epoch's remaining batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from ser_mtl.io_utils import atomic_write_json
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.init_from import load_matching_weights
from ser_mtl.models.packed import PackedAAE
from ser_mtl.models.packed_checkpoint import save_run_checkpoint
from ser_mtl.models.packed_eval import evaluate_pack, stack_batches
from ser_mtl.models.packed_resume import load_pack_state, pack_state, read_pack_state, save_pack_state
from ser_mtl.models.packed_schedule import PackedSchedule


class PackInterrupted(Exception):
    """`train_pack` was asked to stop (``interrupt``) and saved the pack's state to resume from."""


@dataclass
class RunSpec:
    """One packed run: its seed (``seed_everything`` of an unpacked fit), output folder and model arguments."""

    seed: int
    out_dir: str | Path
    model: dict[str, Any] = field(default_factory=dict)


def _build_model(spec: RunSpec, dm: pl.LightningDataModule) -> MultiTaskAAE:
    """Run's model as the CLI links it from the datamodule, initialised under the run's seed."""
    pl.seed_everything(spec.seed, verbose=False)
    linked = {"num_emotions": dm.num_classes, "num_speakers": dm.num_speakers, "input_size": dm.input_size,
              "class_names": dm.class_names}
    model = MultiTaskAAE(**{**linked, **spec.model})
    if model.hparams.init_from:
        load_matching_weights(model, model.hparams.init_from)
    return model


def _steps_per_batch(pack: PackedAAE) -> int:
    return 1 + ("decoder" in pack.template) + 2 * ("discriminator" in pack.template)


def _train_epoch(pack: PackedAAE, iterators: Sequence, keys: Sequence[str],
                 interrupt: Callable[[], bool] | None = None) -> tuple[list[int], bool]:
    """One epoch of every active run on its own batches; returns the batches each run trained on, and
    whether ``interrupt()`` ended the epoch early (checked after every batch index)."""
    done = [0] * pack.k
    active = pack.active.tolist()
    for batches in zip_longest(*iterators):
        if interrupt is not None and interrupt():
            return done, True
        batches = [b if on else None for b, on in zip(batches, active)]
        sizes = {int(b["x"].shape[0]) for b in batches if b is not None}
        for size in sorted(sizes):
            runs = [b is not None and int(b["x"].shape[0]) == size for b in batches]
            ref = next(b for b, on in zip(batches, runs) if on)
            packed, _ = stack_batches([b if on else ref for b, on in zip(batches, runs)], keys, pack.device)
            pack.step(packed, runs=runs)
            done = [d + on for d, on in zip(done, runs)]
    return done, False


def train_pack(specs: Sequence[RunSpec], datamodules: Sequence[pl.LightningDataModule], max_epochs: int,
               schedule: Mapping[str, Any] | None = None, device: str = "cpu",
               models: Sequence[MultiTaskAAE] | None = None, state_path: str | Path | None = None,
               identity: Any = None, interrupt: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
    """Train the K runs of ``specs``, run k on ``datamodules[k]``, for up to ``max_epochs`` epochs.

    Args:
        specs: the runs; their model arguments must agree except ``lr`` (`PackedAAE`).
        datamodules: one `SERDataModule` per run (its fold, its seed); prepared and set up here.
        max_epochs: epochs at most (a run stops earlier through its schedule).
        schedule: `RestoreBestHalveLR` arguments (monitor must be ``val/ua``); None = the defaults.
        device: where the pack trains ("cpu", "cuda", ...).
        models: the runs' models, already built under their seeds (e.g. by the CLI,
            `ser_mtl.experiments.pack_runner`); None builds them from ``specs`` (``init_from`` applied).
        state_path: the pack's resume state (module docstring): resumed from when it holds ``identity``'s
            state, written after every epoch; None: no resumption.
        identity: what identifies this pack in its state (JSON-like; default: the runs' seeds and folders).
        interrupt: polled after every batch; True saves the state and raises `PackInterrupted`.
    Returns: per run ``{"best_score", "best_epoch", "stop_epoch", "num_restores", "diverged", "lrs"}``,
    also written to ``<out_dir>/packed_fit.json``.
    """
    if len(specs) != len(datamodules) or not specs:
        raise ValueError(f"train_pack: need one datamodule per run spec, got {len(specs)} specs and "
                         f"{len(datamodules)} datamodules")
    schedule = {"monitor": "val/ua", "mode": "max", **(schedule or {})}
    if schedule["monitor"] != "val/ua" or schedule["mode"] != "max":
        raise ValueError(f"train_pack: the packed schedule monitors val/ua (max), got {schedule['monitor']} "
                         f"({schedule['mode']})")
    for dm in datamodules:
        dm.prepare_data()
        dm.setup("fit")
    if models is None:
        models = [_build_model(spec, dm) for spec, dm in zip(specs, datamodules)]
    elif len(models) != len(specs):
        raise ValueError(f"train_pack: {len(models)} models for {len(specs)} run specs")
    pack = PackedAAE(models, [spec.seed for spec in specs], device=device)
    del models
    loaders = []
    for run, dm in zip(specs, datamodules):
        pl.seed_everything(run.seed, verbose=False)  # the batch order follows the run's seed, as in a fit
        loaders.append(dm.train_dataloader())
    keys = ["x", *pack.tasks]
    sched = PackedSchedule(pack, **schedule)
    if identity is None:
        identity = [[run.seed, str(run.out_dir)] for run in specs]
    state = read_pack_state(state_path, identity) if state_path is not None else None
    start, skip, batches_done = 0, [0] * pack.k, [0] * pack.k
    if state is None:
        sched.on_train_start()
    else:
        load_pack_state(pack, sched, state)
        start, skip, batches_done = state["next_epoch"], state["skip"], state["batches_done"]
        print(f"[pack] resumed from {state_path}: epoch {start}" + (f", after {skip} of its batches" if any(skip)
                                                                    else ""), flush=True)
    per_batch = _steps_per_batch(pack)
    num_emotions = int(pack.hparams["num_emotions"])
    for epoch in range(start, max_epochs):
        active = pack.active.tolist()
        if not any(active):
            break
        for loader, first in zip(loaders, skip):
            loader.batch_sampler.epoch_fn = lambda epoch=epoch: epoch
            loader.batch_sampler.skip_fn = lambda first=first: first  # batches trained before an interruption
        started = time.perf_counter()
        done, stopped = _train_epoch(pack, [iter(loader) for loader in loaders], keys, interrupt)
        batches_done = [a + b for a, b in zip(batches_done, done)]
        if stopped:
            if state_path is None:
                raise PackInterrupted("train_pack: interrupted, and no state_path to save the pack's state to")
            save_pack_state(state_path, pack_state(pack, sched, identity, epoch, [s + d for s, d in zip(skip, done)],
                                                   batches_done))
            raise PackInterrupted(f"train_pack: interrupted in epoch {epoch}; state saved to {state_path}")
        skip = [0] * pack.k
        for k in [k for k, bad in enumerate(pack.diverged.tolist()) if bad and active[k]]:
            sched.stop(k, epoch)
        val = evaluate_pack(pack, [dm.val_dataloader() for dm in datamodules], num_emotions)
        active = pack.active.tolist()
        scores = [(float("nan") if v is None else v["ua"]) if on else None for v, on in zip(val, active)]
        sched.after_validation(epoch, scores)
        shown = " ".join("-" if v is None else f"{v:.3f}" for v in scores)
        print(f"[pack] epoch {epoch} ({time.perf_counter() - started:.0f} s): val/ua {shown}", flush=True)
        for k, spec in enumerate(specs):
            if not active[k]:
                continue
            ckpts = Path(spec.out_dir) / "checkpoints"
            step = batches_done[k] * per_batch
            cb = sched.callbacks[k]
            if cb.best_epoch == epoch:
                save_run_checkpoint(ckpts / "best.ckpt", pack, k, epoch, step, datamodules[k], cb.best_state)
            save_run_checkpoint(ckpts / "last.ckpt", pack, k, epoch, step, datamodules[k])
        if state_path is not None:  # last: a kill before this replays the epoch, which rewrites the same files
            save_pack_state(state_path, pack_state(pack, sched, identity, epoch + 1, skip, batches_done))
    sched.on_train_end()
    results = []
    for k, spec in enumerate(specs):
        cb = sched.callbacks[k]
        result = {"seed": spec.seed, "best_score": cb.best_score, "best_epoch": cb.best_epoch,
                  "stop_epoch": sched.stop_epoch[k], "num_restores": cb.num_restores,
                  "diverged": bool(pack.diverged[k]), "lrs": sched.lrs(k), "batches": batches_done[k]}
        atomic_write_json(Path(spec.out_dir) / "packed_fit.json", result)
        results.append(result)
    return results
