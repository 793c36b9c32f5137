"""The paper's learning-rate schedule: restore the best epoch and halve the learning rate on a plateau.

Latif et al., section 4.3: "If the accuracy of the model did not improve on the validation set after
5 epochs, we restored the model to best epoch and learning rate was halved. This process continued
until the learning rate reached below 0.00001." Lightning's schedulers are never involved (manual
optimisation): the callback sets every optimizer's learning rates itself, after each validation of a
`fit` only, the same on every DDP rank (synced metric). Its state, best weights included (CPU copy),
travels in the checkpoint, so a resumed run continues with the same best score, wait count and weights.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from ser_mtl.data.datasets import labelled_tasks
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.layout import FIT_RECORD
from ser_mtl.stage_clock import StageClock
from ser_mtl.tasks import auto_monitor, monitor_mode

AUTO = "auto"


class MonitorError(ValueError):
    """A monitored metric that validation of this model on these data never logs."""


def resolve_monitor(monitor: str, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> str:
    """``monitor``, or for ``"auto"`` the model's own (`ser_mtl.tasks.auto_monitor`): ``val/ua`` with the
    emotion task (or without ``tasks``), else ``val/ccc_mean`` with a dimension, else its first task's. In a
    fit, `MonitorError` if the module's ``validation_metrics`` (given the tasks some validation utterance is
    labelled for) never logs it."""
    tasks = list(getattr(pl_module, "tasks", None) or ["emotion"])
    if monitor == AUTO:
        monitor = auto_monitor(tasks)
    declared = getattr(pl_module, "validation_metrics", None)
    if stage != "fit" or not callable(declared):
        return monitor
    labels = getattr(getattr(trainer.datamodule, "val_set", None), "labels", None)
    labelled = None if labels is None else labelled_tasks(labels)  # None: unknown
    logged = declared(labelled)
    if monitor not in logged:
        unlabelled = [t for t in tasks if labelled is not None and t not in labelled]
        why = f"; no validation utterance has a {' or '.join(unlabelled)} label" if unlabelled else ""
        raise MonitorError(f"monitor {monitor!r} is never logged in validation of this model (tasks {tasks}{why}); "
                           f"it logs {', '.join(logged) or 'nothing'}: choose one with --checkpoint.monitor")
    return monitor


def resolve_mode(mode: str, monitor: str) -> str:
    """``mode``, or for ``"auto"`` the monitored key's direction (`ser_mtl.tasks.monitor_mode`)."""
    return monitor_mode(monitor) if mode == AUTO else mode


class BestCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` of the best epoch whose ``monitor`` may be ``"auto"`` (settled by `resolve_monitor`).

    Args:
        dirpath: folder of the checkpoint files.
        filename: checkpoint file name without ``.ckpt``.
        monitor: logged metric to keep the best epoch of; ``"auto"``: ``val/ua`` with the emotion task, else
            ``val/ccc_mean`` with a dimension, else the first task's (``val/gender_acc``, ``val/loss_age``);
            None: no metric, the latest epoch.
        mode: "max" if a higher value is better, "min" if lower is better; ``"auto"``: the monitor's own
            direction (min for a loss, the EER or an error; max for accuracies, UA, CCC).
        **kwargs: the other `ModelCheckpoint` arguments.
    """

    def __init__(self, dirpath: str | None = None, filename: str | None = None, monitor: str | None = AUTO,
                 mode: Literal["max", "min", "auto"] = AUTO, **kwargs: Any) -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=monitor, mode="max" if mode == AUTO else mode,
                         **kwargs)
        self.requested_monitor, self.requested_mode = monitor, mode

    @property
    def state_key(self) -> str:
        # a plain ModelCheckpoint's key, so that a run checkpointed before this class existed resumes its best score
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__):]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.requested_monitor is not None:
            self.monitor = resolve_monitor(self.requested_monitor, trainer, pl_module, stage)
            mode = resolve_mode(self.requested_mode, self.monitor)
            if mode != self.mode:  # what ModelCheckpoint's constructor sets for a mode (its public attributes)
                self.mode, self.kth_value = mode, torch.tensor(math.inf if mode == "min" else -math.inf)
        super().setup(trainer, pl_module, stage)


def _to_cpu(obj: Any) -> Any:
    """Deep copy of a (nested) state dict with every tensor detached and moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


class RestoreBestHalveLR(pl.Callback):
    """After `patience` validations without improvement, reload the best weights and multiply every lr by `factor`.

    Every parameter group of every optimizer is scaled; training stops once any is below `min_lr`.

    Args:
        monitor: logged metric to watch (e.g. "val/ua"); "auto": the model's own (see `resolve_monitor`).
        mode: "max" if a higher value is better, "min" if lower is better; "auto": the monitor's direction.
        patience: validations without improvement before restoring and halving (paper: 5).
        factor: multiplier applied to every learning rate (paper: 0.5).
        min_lr: training stops once a learning rate falls below this (paper: 1e-5).
        min_delta: an improvement must exceed this margin.
        restore_optimizer_state: also reload the optimizers' state (e.g. SGD momentum) saved at the best
            epoch; the learning rates are still the current ones times `factor`.
        restore_best_on_train_end: when the fit ends for any other reason (e.g. `max_epochs`), load the
            best weights, so that the module tested after `fit` is the best one, as after a normal stop.
    """

    def __init__(self, monitor: str = AUTO, mode: Literal["max", "min", "auto"] = AUTO, patience: int = 5,
                 factor: float = 0.5, min_lr: float = 1e-5, min_delta: float = 0.0,
                 restore_optimizer_state: bool = False, restore_best_on_train_end: bool = True) -> None:
        super().__init__()
        if mode not in ("max", "min", AUTO):
            raise ValueError(f"RestoreBestHalveLR: mode must be 'max', 'min' or 'auto', got {mode!r}")
        if patience < 1:
            raise ValueError(f"RestoreBestHalveLR: patience must be >= 1, got {patience}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"RestoreBestHalveLR: factor must be in (0, 1), got {factor}")
        if min_lr <= 0 or min_delta < 0:
            raise ValueError(f"RestoreBestHalveLR: need min_lr > 0 and min_delta >= 0, got {min_lr}, {min_delta}")
        self.monitor, self.mode, self.patience, self.factor = monitor, mode, patience, factor
        self.requested_monitor, self.requested_mode, self.min_lr, self.min_delta = monitor, mode, min_lr, min_delta
        self.restore_optimizer_state = restore_optimizer_state
        self.restore_best_on_train_end = restore_best_on_train_end
        self.best_score = math.inf if mode == "min" else -math.inf
        self.best_epoch, self.wait, self.num_restores = -1, 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None  # CPU copy of the module's state_dict
        self.best_optimizer_states: list[dict[str, Any]] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def _improved(self, current: float) -> bool:
        return not math.isnan(current) and (current > self.best_score + self.min_delta if self.mode == "max"
                                            else current < self.best_score - self.min_delta)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.monitor = resolve_monitor(self.requested_monitor, trainer, pl_module, stage)
        mode = resolve_mode(self.requested_mode, self.monitor)
        if mode != self.mode and self.best_epoch < 0:  # nothing seen yet (a restored state keeps its own)
            self.best_score = math.inf if mode == "min" else -math.inf
        self.mode = mode

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        low = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups if g["lr"] < self.min_lr]
        if low:
            rank_zero_warn(f"RestoreBestHalveLR: learning rate(s) {low} already below min_lr={self.min_lr}: "
                           "training will stop at the first plateau")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self.monitor not in trainer.callback_metrics:
            raise RuntimeError(f"RestoreBestHalveLR: metric {self.monitor!r} was not logged during validation; "
                               f"logged: {sorted(trainer.callback_metrics)}")
        current = float(trainer.callback_metrics[self.monitor])
        if self._improved(current):
            self.best_score, self.best_epoch, self.wait = current, trainer.current_epoch, 0
            self.best_state = _to_cpu(pl_module.state_dict())
            if self.restore_optimizer_state:
                self.best_optimizer_states = [_to_cpu(opt.state_dict()) for opt in trainer.optimizers]
            return
        if math.isnan(current):
            rank_zero_warn(f"RestoreBestHalveLR: {self.monitor} is NaN at epoch {trainer.current_epoch}; "
                           "counted as no improvement")
        self.wait += 1
        if self.wait >= self.patience:
            self._restore_and_decay(trainer, pl_module)

    def _restore_and_decay(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wait, self.num_restores = 0, self.num_restores + 1
        new_lrs = [[g["lr"] * self.factor for g in opt.param_groups] for opt in trainer.optimizers]
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)
        if self.restore_optimizer_state and self.best_optimizer_states is not None:
            for opt, state in zip(trainer.optimizers, self.best_optimizer_states):
                opt.load_state_dict(state)
        for opt, lrs in zip(trainer.optimizers, new_lrs):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr
        flat = [lr for lrs in new_lrs for lr in lrs]
        stop = any(lr < self.min_lr for lr in flat)
        trainer.should_stop = trainer.should_stop or stop
        rank_zero_info(f"RestoreBestHalveLR: epoch {trainer.current_epoch}: no improvement of {self.monitor} for "
                       f"{self.patience} validations; restored epoch {self.best_epoch} ({self.monitor}="
                       f"{self.best_score:.4f}), learning rates x{self.factor} -> {sorted(set(flat))}"
                       + (f"; below min_lr={self.min_lr}, stopping" if stop else ""))
        for logger in trainer.loggers:
            logger.log_metrics({"lr_restore/count": float(self.num_restores), "lr_restore/lr": min(flat)},
                               step=trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore_best_on_train_end and self.best_state is not None:
            pl_module.load_state_dict(self.best_state)
            rank_zero_info(f"RestoreBestHalveLR: fit ended; loaded the best weights (epoch {self.best_epoch}, "
                           f"{self.monitor}={self.best_score:.4f})")

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "wait": self.wait,
                "num_restores": self.num_restores, "best_state": self.best_state,
                "best_optimizer_states": self.best_optimizer_states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = float(state_dict["best_score"]), int(state_dict["best_epoch"])
        self.wait, self.num_restores = int(state_dict["wait"]), int(state_dict["num_restores"])
        self.best_state = state_dict["best_state"]
        self.best_optimizer_states = state_dict["best_optimizer_states"]


class StageTimed(pl.Callback):
    """A callback that times its stage with a `StageClock` (``ser_mtl/stage_clock.py``): ``SERCLI`` hands over the
    clock it started when set-up began; a Trainer built in Python starts one at the ``setup`` hook instead. The
    clock is dropped at ``teardown``, so a later stage with the same callback measures its own."""

    def __init__(self) -> None:
        self.clock = StageClock()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.clock.running:
            self.clock = StageClock.start({})

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.clock = StageClock()


class FitRecord(StageTimed):
    """What a fit selected and cost, summed over its resumed pieces (the totals travel in checkpoints).

    Totals are settled at each training epoch's end (after validation, before checkpoints). At the fit's end
    rank 0 writes ``<default_root_dir>/fit_record.json``: ``selection`` (``monitor``, ``mode``, ``score`` of
    the best checkpoint, its ``epoch``; null without one) and ``cost`` (``epochs``, ``restores`` =
    ``halvings``, ``fit_seconds``, ``startup_seconds``, ``epoch_seconds``, ``train_segments`` (all processes),
    ``segments_per_second`` (per epoch second), ``device``, ``precision``, ``processes``).

    ``fit_seconds`` is measured as a test's seconds are (``ser_mtl/stage_clock.py``): from the start of set-up
    to the fit's end, summed over resumed pieces (a killed piece counts up to its last checkpoint);
    ``startup_seconds`` sums the pieces' start-ups (launch to set-up) apart; ``epoch_seconds`` is the part spent
    in training epochs with their validation.

    Args:
        log_epochs: print one line per epoch (seconds, last-step training losses, monitored score, learning
            rates, restores); None: only when stdout is not a terminal (cv children, SLURM logs).
    """

    def __init__(self, log_epochs: bool | None = None) -> None:
        super().__init__()
        self.log_epochs = log_epochs
        self.epoch_seconds, self.train_segments, self.epochs, self.best_epoch = 0.0, 0, 0, -1
        self.earlier_seconds, self.earlier_startup = 0.0, 0.0  # the resumed pieces before this one
        self._start, self._segments, self._restores = time.perf_counter(), 0, 0

    @property
    def fit_seconds(self) -> float:
        """Set-up to now, over every piece of the fit so far."""
        return self.earlier_seconds + self.clock.seconds()

    @property
    def startup_seconds(self) -> float:
        return self.earlier_startup + (self.clock.startup_seconds or 0.0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._segments = time.perf_counter(), 0
        self._restores = getattr(_schedule(trainer), "num_restores", 0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._segments += len(batch["x"] if isinstance(batch, dict) else batch[0])  # x: (B, 1, F, T)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ckpt = _best_checkpoint(trainer)  # checkpoint callbacks run last: its best is still the previous one
        current = None if trainer.sanity_checking or ckpt is None else trainer.callback_metrics.get(ckpt.monitor)
        if trainer.state.fn == "fit" and current is not None and (ckpt.best_model_score is None or (
                current > ckpt.best_model_score if ckpt.mode == "max" else current < ckpt.best_model_score)):
            self.best_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        local = torch.tensor(float(self._segments), device=pl_module.device)
        self.train_segments += round(float(trainer.strategy.reduce(local, reduce_op="sum")))  # every process's
        self.epoch_seconds, self.epochs = self.epoch_seconds + seconds, trainer.current_epoch + 1
        if trainer.is_global_zero and (self.log_epochs if self.log_epochs is not None else not sys.stdout.isatty()):
            print(self.epoch_line(trainer, seconds), flush=True)

    def epoch_line(self, trainer: pl.Trainer, seconds: float) -> str:
        """``epoch 3  41.2 s  train loss_rec 0.812 ...  val/ua 0.512 (best 0.530 @ 2)  lr 0.01/0.01/0.01``."""
        metrics, ckpt, schedule = trainer.callback_metrics, _best_checkpoint(trainer), _schedule(trainer)
        parts = [f"epoch {trainer.current_epoch}", f"{seconds:.1f} s", "train " + " ".join(
            f"{k[6:]} {float(v):.3f}" for k, v in sorted(metrics.items()) if k.startswith("train/loss"))]
        if ckpt and ckpt.monitor in metrics:
            best = metrics[ckpt.monitor] if self.best_epoch == trainer.current_epoch else ckpt.best_model_score
            parts.append(f"{ckpt.monitor} {float(metrics[ckpt.monitor]):.3f} (best {float(best):.3f} @ "
                         f"{self.best_epoch})")
        parts.append("lr " + "/".join(f"{g['lr']:.3g}" for opt in trainer.optimizers for g in opt.param_groups))
        if schedule and schedule.num_restores > self._restores:
            parts.append(f"restored epoch {schedule.best_epoch}, lr x{schedule.factor:g}")
        return "  ".join(parts)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        ckpt, device = _best_checkpoint(trainer), pl_module.device
        restores, seconds = getattr(_schedule(trainer), "num_restores", 0), self.epoch_seconds
        selection = None if ckpt is None or ckpt.best_model_score is None else {
            "monitor": ckpt.monitor, "mode": ckpt.mode, "score": float(ckpt.best_model_score), "epoch": self.best_epoch}
        atomic_write_json(os.path.join(trainer.default_root_dir, FIT_RECORD), {"selection": selection, "cost": {
            "epochs": self.epochs, "restores": restores, "halvings": restores, "fit_seconds": self.fit_seconds,
            "startup_seconds": self.startup_seconds, "epoch_seconds": seconds, "train_segments": self.train_segments,
            "segments_per_second": self.train_segments / (seconds or 1.0),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            "precision": str(trainer.precision), "processes": trainer.world_size}})

    def state_dict(self) -> dict[str, Any]:
        return {"fit_seconds": self.fit_seconds, "startup_seconds": self.startup_seconds,
                "epoch_seconds": self.epoch_seconds, "train_segments": self.train_segments, "epochs": self.epochs,
                "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resumed fit carries the earlier pieces' totals (checkpoints of an older version had only
        ``fit_seconds``, which then meant epoch seconds)."""
        self.earlier_seconds = float(state_dict["fit_seconds"])
        self.earlier_startup = float(state_dict.get("startup_seconds", 0.0))
        self.epoch_seconds = float(state_dict.get("epoch_seconds", state_dict["fit_seconds"]))
        self.train_segments = int(state_dict["train_segments"])
        self.epochs, self.best_epoch = int(state_dict["epochs"]), int(state_dict["best_epoch"])


def _best_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The first checkpoint callback with a monitor: the one whose file is tested."""
    return next((cb for cb in trainer.checkpoint_callbacks if cb.monitor), None)


def _schedule(trainer: pl.Trainer) -> RestoreBestHalveLR | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, RestoreBestHalveLR)), None)
