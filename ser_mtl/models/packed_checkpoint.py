"""One packed run as an ordinary Lightning checkpoint of `MultiTaskAAE` (``best.ckpt`` / ``last.ckpt``).

The file has the keys a ``ser-mtl fit`` checkpoint has (compare ``checkpoints/best.ckpt`` of a fit):
``state_dict`` (run k's unstacked weights and BatchNorm statistics, the unpacked keys and order),
``hyper_parameters`` (the run's `MultiTaskAAE` arguments, its own initial lr), ``optimizer_states``
(run k's three optimizer states in `MultiTaskAAE.configure_optimizers` order, torch layout),
``epoch``, ``global_step`` (optimizer steps, 4 per batch like the unpacked count), the Lightning
version and, with a datamodule, ``datamodule_hyper_parameters`` and the datamodule's ``state_dict``
under its class name (what Lightning's checkpoint connector writes and restores), so that
``MultiTaskAAE.load_from_checkpoint``, ``SERDataModule.load_from_checkpoint``, ``ser-mtl test
--ckpt_path`` and ``ser-mtl classify`` load it. Everything in it is tensors and plain values, so
`ser_mtl.checkpoint_io.read_checkpoint` (``weights_only``) accepts it. Written atomically.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from typing import Any

import pytorch_lightning as pl
import torch

from ser_mtl.io_utils import atomic_path
from ser_mtl.models.packed import PackedAAE


def _plain(obj: Any) -> Any:
    """Hyper-parameters as ``weights_only``-loadable values (dataclasses such as FeatureConfig -> dicts)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def run_checkpoint(pack: PackedAAE, k: int, epoch: int, global_step: int,
                   datamodule: pl.LightningDataModule | None = None,
                   state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Run k's checkpoint dict; ``state_dict`` overrides the pack's current weights (e.g. the best ones)."""
    if not 0 <= k < pack.k:
        raise IndexError(f"run_checkpoint: run {k} is not in a pack of {pack.k}")
    ckpt: dict[str, Any] = {
        "epoch": int(epoch),
        "global_step": int(global_step),
        "pytorch-lightning_version": pl.__version__,
        "state_dict": OrderedDict(state_dict if state_dict is not None else pack.run_state_dict(k)),
        "callbacks": {},
        "optimizer_states": pack.optimizer_state_dicts(k),
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": _plain(pack.hyper_parameters(k)),
    }
    if datamodule is not None:
        ckpt["datamodule_hparams_name"] = "kwargs"
        ckpt["datamodule_hyper_parameters"] = _plain(dict(datamodule.hparams))
        ckpt[type(datamodule).__qualname__] = datamodule.state_dict()
    return ckpt


def save_run_checkpoint(path: str | os.PathLike, pack: PackedAAE, k: int, epoch: int, global_step: int,
                        datamodule: pl.LightningDataModule | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write `run_checkpoint` to ``path`` atomically (the old file stays until the new one is complete)."""
    ckpt = run_checkpoint(pack, k, epoch, global_step, datamodule, state_dict)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
