"""Map-style dataset of fixed-width, normalised feature segments of one feature store.

Items are the batch dicts of docs/interfaces.md; cutting and normalising are the `FrontEnd`'s
(``ser_mtl/frontend.py``), the same code ``ser-mtl classify`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from ser_mtl.data.segments import segment_index
from ser_mtl.data.store import FeatureStore
from ser_mtl.frontend import FrontEnd
from ser_mtl.tasks import TASKS


@dataclass
class UtteranceLabels:
    """Per-utterance labels and ids for the utterances a dataset covers (all arrays (U,))."""

    store_index: np.ndarray  # (U,) int64 row of the utterance in its feature store
    emotion: np.ndarray  # (U,) int64, -1 = no label for the task
    gender: np.ndarray  # (U,) int64, F=0, M=1, -1 = unknown
    speaker: np.ndarray  # (U,) int64 index into the training speaker space, -1 = not a training speaker
    utt: np.ndarray  # (U,) int64 global utterance index, unique within the datamodule
    # value task (ser_mtl/tasks.py) -> (U,) float32 target on [0, 1], NaN = no value
    values: dict[str, np.ndarray] = field(default_factory=dict)


def labelled_tasks(labels: UtteranceLabels) -> set[str]:
    """The tasks some utterance of ``labels`` has a label (class >= 0) or a value (not NaN) for."""
    classes = {task for task, spec in TASKS.items() if spec.kind == "classification"
               and hasattr(labels, task) and bool(np.any(np.asarray(getattr(labels, task)) >= 0))}
    values = getattr(labels, "values", {})
    return classes | {task for task, v in values.items() if bool(np.any(~np.isnan(np.asarray(v, dtype=float))))}


class SegmentDataset(Dataset):
    """Segments of the utterances in ``labels``, cut from ``store`` every ``hop`` frames by ``frontend``."""

    def __init__(self, store: FeatureStore, labels: UtteranceLabels, frontend: FrontEnd, hop: int) -> None:
        self.store, self.labels, self.frontend = store, labels, frontend
        lengths = store.lengths[labels.store_index]  # (U,)
        self.index = segment_index(lengths, frontend.segment_frames, hop)  # (S, 2) [local utt, offset]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        local, offset = (int(v) for v in self.index[i])
        frames = self.store.frames(int(self.labels.store_index[local]))  # (F, T_utt) float16 memmap
        seg = self.frontend.segment(frames, offset)  # (C, F, T_seg) float32, normalised
        return {
            "x": torch.from_numpy(seg),  # (C, F, T_seg); C = 1 but for model layers kept apart
            "emotion": torch.tensor(int(self.labels.emotion[local])),
            "gender": torch.tensor(int(self.labels.gender[local])),
            "speaker": torch.tensor(int(self.labels.speaker[local])),
            "utt": torch.tensor(int(self.labels.utt[local])),
            **{task: torch.tensor(float(v[local]), dtype=torch.float32) for task, v in self.labels.values.items()},
        }
