"""Diagnostics for distributed runs: are the ranks' parameters still identical?

With ``--trainer.callbacks+=ser_mtl.diagnostics.ParameterDigest`` every rank writes, at the end of fit,
``param_digest_rank<R>.json`` (SHA-256 of the parameters and of the buffers) into the run folder: equal
parameter digests mean DDP kept the replicas in sync. BatchNorm statistics differ without ``sync_batchnorm``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytorch_lightning as pl
import torch

from ser_mtl.io_utils import atomic_write_text


def parameter_digest(module: torch.nn.Module, buffers: bool = False) -> str:
    """SHA-256 over the names and exact bytes of every parameter (or every buffer), in name order."""
    digest = hashlib.sha256()
    tensors = module.named_buffers() if buffers else module.named_parameters()
    for name, tensor in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ParameterDigest(pl.Callback):
    """Writes each rank's parameter digest at the end of fit (see the module docstring)."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n_params = sum(p.numel() for p in pl_module.parameters())
        out = Path(trainer.default_root_dir) / f"param_digest_rank{trainer.global_rank}.json"
        atomic_write_text(out, json.dumps({"rank": trainer.global_rank, "world_size": trainer.world_size,
                                           "n_params": n_params, "sha256": parameter_digest(pl_module),
                                           "buffers_sha256": parameter_digest(pl_module, buffers=True)}))
