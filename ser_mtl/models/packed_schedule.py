"""`PackedSchedule`: the paper's restore-best-and-halve schedule and early stop, per run of a pack.

Each packed run gets its own `ser_mtl.callbacks.RestoreBestHalveLR`, the very callback an unpacked
fit uses, driven through a per-run view of the pack: the callback sees a "trainer" whose optimizers
are run k's slices of the `PackedOptimizer` s (their ``param_groups`` lr writes through to run k's
lr) and a "module" whose ``state_dict`` / ``load_state_dict`` are run k's unstacked weights. So each
run keeps its own best score, wait count, best weights (and optimizer states), restores and stop,
exactly as the single-run callback decides them; a run that stops is set inactive in the pack
(`PackedAAE.active`) and no longer changes, while the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from pytorch_lightning.trainer.states import TrainerFn

from ser_mtl.callbacks import RestoreBestHalveLR
from ser_mtl.models.packed import PackedAAE
from ser_mtl.models.packed_optim import PackedOptimizer


class _LrGroup(dict):
    """Run k's parameter group of a packed optimizer: setting ``lr`` sets run k's learning rate."""

    def __init__(self, opt: PackedOptimizer, k: int) -> None:
        super().__init__(lr=opt.lrs[k])
        self._opt, self._k = opt, k

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key == "lr":
            self._opt.set_lr(self._k, float(value))


class _RunOptimizer:
    """Run k's view of one packed optimizer, with the ``torch.optim.Optimizer`` calls the callback makes."""

    def __init__(self, opt: PackedOptimizer, k: int) -> None:
        self._opt, self._k = opt, k

    @property
    def param_groups(self) -> list[_LrGroup]:
        return [_LrGroup(self._opt, self._k)]

    def state_dict(self) -> dict:
        return self._opt.run_state_dict(self._k)

    def load_state_dict(self, state: dict) -> None:
        self._opt.load_run_state_dict(self._k, state)


class _RunModule:
    """Run k's weights as a module's ``state_dict`` / ``load_state_dict``."""

    def __init__(self, pack: PackedAAE, k: int) -> None:
        self._pack, self._k = pack, k

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._pack.run_state_dict(self._k)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._pack.load_run_state_dict(self._k, state)


class PackedSchedule:
    """One `RestoreBestHalveLR` per run of ``pack``; call `after_validation` once per epoch.

    Args:
        pack: the packed runs.
        **kwargs: `RestoreBestHalveLR`'s arguments (monitor, mode, patience, factor, min_lr, ...),
            the same for every run.
    """

    def __init__(self, pack: PackedAAE, **kwargs: Any) -> None:
        self.pack = pack
        self.callbacks = [RestoreBestHalveLR(**kwargs) for _ in range(pack.k)]
        self.stop_epoch: list[int | None] = [None] * pack.k
        self._trainers = [SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn=TrainerFn.FITTING),
                                          callback_metrics={}, current_epoch=0, should_stop=False, loggers=[],
                                          global_step=0,
                                          optimizers=[_RunOptimizer(pack.optimizers[n], k)
                                                      for n in pack.optimizer_names])
                          for k in range(pack.k)]
        self._modules = [_RunModule(pack, k) for k in range(pack.k)]

    @property
    def monitor(self) -> str:
        return self.callbacks[0].monitor

    def on_train_start(self) -> None:
        for cb, trainer, module in zip(self.callbacks, self._trainers, self._modules):
            cb.on_train_start(trainer, module)

    def after_validation(self, epoch: int, scores: Sequence[float | None]) -> list[int]:
        """Give each active run its validation score of ``epoch`` (None for a run that stopped); returns
        the runs that stop now (they are set inactive in the pack, with their best weights loaded)."""
        if len(scores) != self.pack.k:
            raise ValueError(f"PackedSchedule: {len(scores)} scores for {self.pack.k} runs")
        active = self.pack.active.tolist()
        stopped = []
        for k, (cb, trainer, module) in enumerate(zip(self.callbacks, self._trainers, self._modules)):
            if not active[k]:
                continue
            if scores[k] is None:
                raise ValueError(f"PackedSchedule: run {k} is active but has no {self.monitor} at epoch {epoch}")
            trainer.current_epoch = epoch
            trainer.callback_metrics = {self.monitor: torch.tensor(float(scores[k]))}
            cb.on_validation_end(trainer, module)
            if trainer.should_stop:
                self.stop(k, epoch)
                stopped.append(k)
        return stopped

    def stop(self, k: int, epoch: int) -> None:
        """Stop run k (schedule end, divergence or the loop's end); it keeps its current weights."""
        self.pack.active[k] = False
        self._trainers[k].should_stop = True
        if self.stop_epoch[k] is None:
            self.stop_epoch[k] = epoch

    def on_train_end(self) -> None:
        """Every run loads its best weights, as `RestoreBestHalveLR.on_train_end` does after a fit."""
        for cb, trainer, module in zip(self.callbacks, self._trainers, self._modules):
            cb.on_train_end(trainer, module)

    def state_dict(self) -> dict[str, Any]:
        """Every run's callback state (best score, wait, restores, best weights) and stop epoch."""
        return {"callbacks": [cb.state_dict() for cb in self.callbacks], "stop_epoch": list(self.stop_epoch)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of `state_dict`; a run that the pack has inactive counts as stopped."""
        active = self.pack.active.tolist()
        for k, (cb, saved) in enumerate(zip(self.callbacks, state["callbacks"], strict=True)):
            cb.load_state_dict(saved)
            self.stop_epoch[k] = state["stop_epoch"][k]
            self._trainers[k].should_stop = not active[k]

    def lrs(self, k: int) -> list[float]:
        """Run k's current learning rate of every optimizer (`MultiTaskAAE.optimizer_names` order)."""
        return [self.pack.optimizers[n].lrs[k] for n in self.pack.optimizer_names]
