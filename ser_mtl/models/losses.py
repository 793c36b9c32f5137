"""The classification loss of paper eq. 2 and the names of the tasks' logged accuracies."""

from __future__ import annotations

from collections.abc import Mapping

import torch

TASKS = ("emotion", "gender", "speaker")
ACC_NAME = {"emotion": "seg_acc", "gender": "gender_acc", "speaker": "speaker_acc"}


def classification_loss(losses: Mapping[str, torch.Tensor], beta: float) -> torch.Tensor:
    """L_c = beta * L_E + (1 - beta) * (L_G + L_S) over the terms present in ``losses`` (paper eq. 2).

    A task absent from ``losses`` (not trained, or no sample of the batch carries its label)
    contributes nothing; with only the emotion task L_c = beta * L_E (paper 5.1).
    """
    if not losses:
        raise ValueError("classification_loss: no task loss to combine")
    return torch.stack([(beta if task == "emotion" else 1.0 - beta) * loss for task, loss in losses.items()]).sum()
