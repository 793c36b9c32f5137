"""Validation and test of `MultiTaskAAE`: per-task losses and accuracies, utterance-level scores.

An utterance's emotion posteriors are averaged by `UtteranceAccuracy` (paper 4.2), logged as
``{stage}/wa`` and ``{stage}/ua``; at test the gender and speaker ones likewise (``aux_test_metrics``,
kept until the next test) for `ResultWriter` (paper Figure 4b-c). A value task's segment predictions are
averaged per utterance by `UtteranceRegression` (``value_metrics``, kept until the next test): a dimension
logs ``{stage}/ccc_<dim>`` and, over the model's dimensions, ``{stage}/ccc_mean``. Segments labelled -1
(NaN for values) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from ser_mtl.metrics import UtteranceAccuracy, UtteranceRegression
from ser_mtl.models.losses import ACC_NAME, classification_loss, task_loss
from ser_mtl.tasks import DIMENSIONS, TASKS

AUX_TASKS = ("gender", "speaker")


class EvaluationSteps(pl.LightningModule):
    """Validation/test steps and epoch hooks, mixed into `MultiTaskAAE` (which provides ``encode``, ``heads``,
    ``decode``, ``decoder``, the metrics, ``n_classes`` and ``_labelled``)."""

    # task -> this stage's metric, made at each epoch start (a mapping no step writes into before then)
    value_metrics: ClassVar[Mapping[str, UtteranceRegression]] = {}

    def _log_task(self, stage: str, task: str, loss: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor,
                  n: int) -> None:
        """The task's loss and, for classes, its segment accuracy (a value task's scores are per utterance)."""
        logged = {f"{stage}/loss_{task}": loss}
        if task in ACC_NAME:
            logged[f"{stage}/{ACC_NAME[task]}"] = (outputs.argmax(dim=-1) == labels).float().mean()
        self.log_dict(logged, batch_size=n, sync_dist=stage != "train")

    def _log_nothing(self, stage: str, keys: Sequence[str]) -> None:
        """Log 0 with weight 0 under DDP: the epoch-end ``sync_dist`` all-reduces each logged key, and a key
        logged on some ranks only would leave the others waiting. The weighted epoch mean is unchanged."""
        if self.trainer.world_size > 1:
            self.log_dict({f"{stage}/{key}": 0.0 for key in keys}, batch_size=0, sync_dist=True)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metric)

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metric)

    def _evaluate(self, batch: Mapping[str, torch.Tensor], stage: str, metric: UtteranceAccuracy | None) -> None:
        x = batch["x"]  # (B, C, F, T)
        z = self.encode(x)
        losses = {}
        for task in self.heads:
            labels, index = self._labelled(batch, task)  # (B,), (n,) indices of the labelled samples
            n = len(index)
            logits = self.head_output(task, z)  # (B, n_classes), or values (B,)
            if task in self.value_metrics:
                self.value_metrics[task].update(logits.float(), batch["utt"], labels)
            elif task == "emotion":
                metric.update(logits.softmax(dim=-1), batch["utt"], labels)
                self._labelled_segments[stage] += n
            elif stage == "test" and task in getattr(self, "aux_test_metrics", {}):
                self.aux_test_metrics[task].update(logits.softmax(dim=-1), batch["utt"], labels)
            if n:
                # the host-made index: boolean indexing would wait for the device to count the mask
                known, known_labels = logits.index_select(0, index), labels.index_select(0, index)
                losses[task] = task_loss(self.task_losses[task], known, known_labels)
                self._log_task(stage, task, losses[task], known, known_labels, n)
            else:
                self._log_nothing(stage, [f"loss_{task}"] + ([ACC_NAME[task]] if task in ACC_NAME else []))
        if losses:
            self.log(f"{stage}/loss_cls", classification_loss(losses, self.hparams.beta), batch_size=x.shape[0],
                     sync_dist=True)
        else:
            self._log_nothing(stage, ["loss_cls"])
        if self.decoder is not None:
            self.log(f"{stage}/loss_rec", F.mse_loss(self.decode(z), x), batch_size=x.shape[0], sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._reset_stage("val", self.val_metric)
        self.value_metrics = self._value_metrics()

    def on_test_epoch_start(self) -> None:
        self._reset_stage("test", self.test_metric)
        # A plain dict (not registered as submodules): checkpoints and state_dict stay as they were.
        self.aux_test_metrics = {task: UtteranceAccuracy(int(self.n_classes[task])).to(self.device)
                                 for task in self.heads if task in AUX_TASKS}
        self.value_metrics = self._value_metrics()

    def _value_metrics(self) -> dict[str, UtteranceRegression]:
        """A fresh `UtteranceRegression` per value task (a plain dict: checkpoints stay as they were)."""
        return {task: UtteranceRegression().to(self.device) for task in self.heads
                if TASKS[task].kind == "regression"}

    def _reset_stage(self, stage: str, metric: UtteranceAccuracy | None) -> None:
        self._labelled_segments[stage] = 0
        if metric is not None:
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_utterance_metrics("val", self.val_metric)
        self._log_value_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_utterance_metrics("test", self.test_metric)
        self._log_value_metrics("test")

    def _log_value_metrics(self, stage: str) -> None:
        """Log {stage}/ccc_<dim> per dimension with values, and {stage}/ccc_mean when every dimension has one.
        Every rank computes the same gathered values (the metric's states are ``cat``-reduced first)."""
        scores = {}
        for task, metric in self.value_metrics.items():
            if task not in DIMENSIONS:
                continue
            local = torch.tensor(float(sum(len(p) for p in metric.preds)), device=self.device)
            if float(self.trainer.strategy.reduce(local, reduce_op="sum")) == 0:
                rank_zero_warn(f"MultiTaskAAE: no {stage} segment had a {task} value; {stage}/ccc_{task} is not "
                               "logged this epoch")
                continue
            scores[f"{stage}/ccc_{task}"] = float(metric.compute())  # the states stay for ResultWriter (test)
        dims = [t for t in self.value_metrics if t in DIMENSIONS]
        if dims and len(scores) == len(dims):
            scores[f"{stage}/ccc_mean"] = sum(scores.values()) / len(dims)
        if scores:
            self.log_dict(scores)

    def _log_utterance_metrics(self, stage: str, metric: UtteranceAccuracy | None) -> None:
        """Log {stage}/wa and {stage}/ua; the test metric keeps its segments for `ResultWriter` to read."""
        if metric is None:
            return
        # Every rank takes the same branch: the count is summed over ranks before deciding.
        local = torch.tensor(float(self._labelled_segments[stage]), device=self.device)
        total = float(self.trainer.strategy.reduce(local, reduce_op="sum"))
        if total == 0:
            rank_zero_warn(f"MultiTaskAAE: no {stage} segment had an emotion label; {stage}/wa and {stage}/ua "
                           "are not logged this epoch")
        else:
            result = metric.compute()
            self.log_dict({f"{stage}/{key}": float(result[key]) for key in ("wa", "ua", "macro_f1")})
        if stage != "test":
            self._reset_stage(stage, metric)

