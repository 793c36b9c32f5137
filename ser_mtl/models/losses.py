"""The classification loss of paper eq. 2, label checks, and the names of the tasks' logged accuracies."""

from __future__ import annotations

from collections.abc import Mapping

import torch

TASKS = ("emotion", "gender", "speaker")
ACC_NAME = {"emotion": "seg_acc", "gender": "gender_acc", "speaker": "speaker_acc"}
# Batch key that `MultiTaskAAE.on_before_batch_transfer` adds: task -> indices (n,) of the samples that
# carry the task's label, found on the host before the batch moves to the device (see `labelled_index`).
LABELLED = "labelled"


def classification_loss(losses: Mapping[str, torch.Tensor], beta: float) -> torch.Tensor:
    """L_c = beta * L_E + (1 - beta) * (L_G + L_S) over the terms present in ``losses`` (paper eq. 2);
    with only the emotion task L_c = beta * L_E (paper 5.1)."""
    if not losses:
        raise ValueError("classification_loss: no task loss to combine")
    return torch.stack([(beta if task == "emotion" else 1.0 - beta) * loss for task, loss in losses.items()]).sum()


def check_label_tensor(labels: object, task: str) -> torch.Tensor:
    """``labels`` itself if it is a (B,) int64 tensor; ValueError naming the task otherwise."""
    if not torch.is_tensor(labels) or labels.dtype != torch.int64 or labels.ndim != 1:
        got = f"{labels.dtype} of shape {tuple(labels.shape)}" if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"MultiTaskAAE: '{task}' labels must be a (B,) int64 tensor, got {got}")
    return labels


def labelled_index(labels: torch.Tensor, task: str, n_classes: int) -> torch.Tensor:
    """Indices (n,) of the labelled samples of ``labels`` (B,); ValueError on a value outside [-1, n_classes).
    Reads the values on the host (one device synchronisation if ``labels`` lives on a GPU)."""
    check_label_tensor(labels, task)
    if labels.numel():
        lo, hi = torch.stack([labels.min(), labels.max()]).tolist()
        if lo < -1 or hi >= n_classes:
            raise ValueError(f"MultiTaskAAE: '{task}' labels must be -1 (missing) or in [0, {n_classes}), "
                             f"got values from {lo} to {hi}; is num_{task}s linked from the DataModule?")
    return (labels >= 0).nonzero().squeeze(1)  # (n,)
