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
