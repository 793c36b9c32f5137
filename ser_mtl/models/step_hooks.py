"""Lightning hooks that keep a `MultiTaskAAE` training step free of device reads (issue 9).

- ``setup`` refuses trainer precisions other than `PRECISIONS` (fp16 would need loss scaling).
- ``on_before_batch_transfer`` checks the labels of the host batch and adds ``batch[LABELLED]``
  (task -> indices (n,) of its labelled samples), so the steps on the device neither validate nor count.
- the phase losses' finiteness check is immediate on a CPU, once per batch on an accelerator.

Per-step values go through the plain ``self.log``: under 1 % of a paper-size CPU step (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from ser_mtl.models.losses import LABELLED, labelled_index

# Trainer precisions the three-phase optimisation supports: fp32 master weights, no loss scaling.
PRECISIONS = ("32-true", "64-true", "bf16-mixed")


class StepHooks(pl.LightningModule):
    """Mixed into `MultiTaskAAE`, which provides ``heads``, ``n_classes`` and calls these in ``_optimise``."""

    _nonfinite: torch.Tensor | None = None  # () bool on the device: a loss of this batch was not finite

    def _defers_checks(self, t: torch.Tensor) -> bool:
        """Whether checks on ``t`` wait for the end of the batch (on an accelerator: no sync per phase)."""
        return t.device.type != "cpu"

    def _diverged(self, what: str) -> FloatingPointError:
        return FloatingPointError(
            f"non-finite training loss {what} at epoch {self.current_epoch}: training diverged; "
            f"lower model.lr, set model.grad_clip, or use model.optimizer adam")

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        """Raise for a non-finite loss of this batch whose check was deferred (one host sync per batch)."""
        bad, self._nonfinite = self._nonfinite, None
        if bad is not None and bool(bad):
            raise self._diverged(f"in batch {batch_idx} (its steps already ran)")

    def setup(self, stage: str) -> None:
        precision = str(self.trainer.precision)
        if precision not in PRECISIONS:
            raise ValueError(f"MultiTaskAAE: trainer.precision {precision!r} is not supported; use one of "
                             f"{list(PRECISIONS)} (--trainer.precision bf16-mixed for mixed precision: fp16 needs "
                             f"loss scaling, which the manual three-phase optimisation does not do)")

    def on_before_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Check the labels of the host batch and add ``batch[LABELLED]`` (task -> indices (n,))."""
        if not isinstance(batch, Mapping) or LABELLED in batch:
            return batch
        index = {task: labelled_index(batch[task], task, self.n_classes[task]) for task in self.heads if task in batch}
        return {**batch, LABELLED: index}
