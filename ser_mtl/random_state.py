"""`RandomStateCheckpoint`: the random-number streams travel in the checkpoint, so a resumed fit is exact.

A fit draws random numbers during training only from the global generators: dropout masks and the
discriminator's prior samples (torch, CPU and CUDA). Lightning does not save their state, so a fit
resumed from ``last.ckpt`` after a kill replays epoch k+1 with the streams ``seed_everything`` left at
start-up, not with those the uninterrupted fit had reached: different dropout masks, different prior
samples, different weights (measured: 60 of 68 tensors after 3 epochs).

This callback saves the torch (CPU and every CUDA device), numpy and Python states with every
checkpoint and puts them back just before the first training batch after the restore, i.e. after
the sanity check and the dataloader set-up, which draw nothing from the global generators
(`SERDataModule` gives its loaders their own ``torch.Generator``). Between a checkpoint written at a
batch boundary (the end of an epoch, or before a batch) and the next batch nothing draws, so the
resumed fit continues from the very states the uninterrupted one had.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


def capture_random_state() -> dict[str, Any]:
    """The global generators' states as tensors and plain Python values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def restore_random_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_random_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


class RandomStateCheckpoint(pl.Callback):
    """Save the global random states with each checkpoint; restore them at the first batch of a resumed fit.

    Under DDP each rank saves only rank 0's states into the (single) checkpoint; on resume every rank
    takes them, which is what the ranks had at start-up too (``seed_everything`` gives them one seed).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            restore_random_state(self._pending)
            self._pending = None
