"""The losses of the classification phase (paper eq. 2, generalised over the task registry), label checks,
and the names of the tasks' logged segment scores.

Targets follow ``ser_mtl/tasks.py``: a classification task's are int64 class indices (-1 = missing), a
regression task's float32 values on [0, 1] (NaN = missing).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ser_mtl.tasks import TASKS

# The segment accuracy each classification task logs as {stage}/<name> (emotion's utterance scores are wa/ua).
ACC_NAME = {name: spec.monitor for name, spec in TASKS.items() if spec.kind == "classification"}
# Batch key that `MultiTaskAAE.on_before_batch_transfer` adds: task -> indices (n,) of the samples that
# carry the task's label, found on the host before the batch moves to the device (see `labelled_index`).
LABELLED = "labelled"
CCC_EPS = 1e-8  # keeps 1 - CCC finite for a batch whose values are all one constant


def classification_loss(losses: Mapping[str, torch.Tensor], beta: float) -> torch.Tensor:
    """L_c = beta * (sum of the primary tasks' losses) + (1 - beta) * (sum of the auxiliary ones') over the
    terms present in ``losses``: the paper's beta * L_E + (1 - beta) * (L_G + L_S) (eq. 2); with only the
    emotion task L_c = beta * L_E (paper 5.1). Dimensional emotion is primary, age auxiliary."""
    if not losses:
        raise ValueError("classification_loss: no task loss to combine")
    return torch.stack([(beta if TASKS[task].role == "primary" else 1.0 - beta) * loss
                        for task, loss in losses.items()]).sum()


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CCC of predictions (n,) against targets (n,) over the batch (population moments), the loss of the
    MSP-Podcast challenge baselines; in [0, 2]."""
    pred, target = pred.float(), target.float()
    mp, mt = pred.mean(), target.mean()
    cov = ((pred - mp) * (target - mt)).mean()
    ccc = 2 * cov / (pred.var(unbiased=False) + target.var(unbiased=False) + (mp - mt) ** 2 + CCC_EPS)
    return 1.0 - ccc


def task_loss(loss: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss ``loss`` (a `TaskSpec.loss`) of a head's outputs for the labelled samples: logits (n, C) with
    class targets (n,), or values (n,) with value targets (n,)."""
    if loss == "cross_entropy":
        return F.cross_entropy(output, target)
    if loss == "ccc":
        return ccc_loss(output, target)
    if loss == "mse":
        return F.mse_loss(output.float(), target.float())
    raise ValueError(f"unknown task loss {loss!r}; expected cross_entropy, ccc or mse")


def check_label_tensor(labels: object, task: str) -> torch.Tensor:
    """``labels`` itself if it is a (B,) tensor of the task's target type; ValueError naming the task otherwise."""
    regression = TASKS[task].kind == "regression"
    ok = torch.is_tensor(labels) and labels.ndim == 1 and (
        labels.is_floating_point() if regression else labels.dtype == torch.int64)
    if not ok:
        got = f"{labels.dtype} of shape {tuple(labels.shape)}" if torch.is_tensor(labels) else type(labels).__name__
        want = "float tensor" if regression else "int64 tensor"
        missing = "NaN" if regression else "-1"
        raise ValueError(f"MultiTaskAAE: '{task}' labels must be a (B,) {want}, got {got} ({missing} = missing)")
    return labels


def labelled_index(labels: torch.Tensor, task: str, n_classes: int) -> torch.Tensor:
    """Indices (n,) of the labelled samples of ``labels`` (B,); ValueError on a class outside [-1, n_classes)
    or an infinite value. Reads the values on the host (one device synchronisation if ``labels`` is on a GPU)."""
    check_label_tensor(labels, task)
    if TASKS[task].kind == "regression":
        if torch.isinf(labels).any():
            raise ValueError(f"MultiTaskAAE: '{task}' values must be finite or NaN (missing), got an infinite one")
        return (~torch.isnan(labels)).nonzero().squeeze(1)  # (n,)
    if labels.numel():
        lo, hi = torch.stack([labels.min(), labels.max()]).tolist()
        if lo < -1 or hi >= n_classes:
            raise ValueError(f"MultiTaskAAE: '{task}' labels must be -1 (missing) or in [0, {n_classes}), "
                             f"got values from {lo} to {hi}; is num_{task}s linked from the DataModule?")
    return (labels >= 0).nonzero().squeeze(1)  # (n,)
