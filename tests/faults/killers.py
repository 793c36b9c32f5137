"""Callbacks that SIGKILL their own fit at a chosen moment, for fault tests through the real CLI.

Added on the command line: ``--trainer.callbacks+=killers.KillAt --trainer.callbacks.epoch 1``
(with this folder on PYTHONPATH). SIGKILL cannot be caught: nothing of the process's own cleanup runs.
"""

import os
import signal

import pytorch_lightning as pl


class KillAt(pl.Callback):
    """SIGKILL when training epoch ``epoch`` starts (``batch`` None), or before its batch ``batch`` runs."""

    def __init__(self, epoch: int = 1, batch: int | None = None) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.batch is None and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batch is not None and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class SaveAndKillAt(pl.Callback):
    """What SLURM preemption does with Lightning's requeue: a mid-epoch ``hpc_ckpt_1.ckpt`` in the run's
    root, then the end (here SIGKILL), before batch ``batch`` of epoch ``epoch`` runs."""

    def __init__(self, epoch: int = 1, batch: int = 2) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer.save_checkpoint(os.path.join(trainer.default_root_dir, "hpc_ckpt_1.ckpt"))
            os.kill(os.getpid(), signal.SIGKILL)


class BatchLog(pl.Callback):
    """Print ``epoch batch_idx first-utt`` for every training batch (to see which batches a resume runs)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        print(f"BATCH {trainer.current_epoch} {batch_idx} {int(batch['utt'][0])}", flush=True)


class RngLog(pl.Callback):
    """Print a hash of the torch CPU random state at epoch and batch starts (debugging resume exactness)."""

    def _say(self, where, trainer):
        import hashlib

        import torch

        print(f"RNG {where} {trainer.current_epoch} {hashlib.md5(torch.get_rng_state().numpy().tobytes()).hexdigest()[:8]}",
              flush=True)

    def on_train_epoch_start(self, trainer, pl_module):
        self._say("epoch_start", trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self._say("batch0", trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._say("epoch_end", trainer)
