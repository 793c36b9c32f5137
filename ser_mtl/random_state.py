"""`RandomStateCheckpoint`: the random-number streams travel in the checkpoint, so a resumed fit is exact.

Dropout masks and the discriminator's prior samples come from the global generators, which Lightning
does not save (a resumed fit replayed the start-up streams: 60 of 68 tensors differed after 3 epochs).
The torch (CPU, CUDA), numpy and Python states are saved with every checkpoint and restored before the
first training batch, after the sanity check and loader set-up, which draw nothing from them.
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
    Under DDP rank 0's states are saved and every rank takes them, as ``seed_everything`` did at start-up."""

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
