"""Map-style dataset of fixed-width, normalised spectrogram segments over feature stores.

One ``SegmentDataset`` covers a list of utterances of one feature store (one corpus). Items are
the batch dicts of docs/interfaces.md: ``x`` (1, F, T_seg), the three labels (-1 = missing)
and the global utterance index ``utt`` used to average segment posteriors per utterance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ser_mtl.data.segments import cut_segment, segment_index
from ser_mtl.data.store import FeatureStore


@dataclass
class UtteranceLabels:
    """Per-utterance labels and ids for the utterances a dataset covers (all arrays (U,))."""

    store_index: np.ndarray  # (U,) int64 row of the utterance in its feature store
    emotion: np.ndarray  # (U,) int64, -1 = no label for the task
    gender: np.ndarray  # (U,) int64, F=0, M=1, -1 = unknown
    speaker: np.ndarray  # (U,) int64 index into the training speaker space, -1 = not a training speaker
    utt: np.ndarray  # (U,) int64 global utterance index, unique within the datamodule


def warp_rows(seg: np.ndarray, factor: float) -> np.ndarray:
    """Frequency-axis warping, a VTLP-like speaker perturbation (Jaitly & Hinton 2013): row i of the
    result is row i / factor of ``seg`` (linear interpolation; past the top edge the top row repeats),
    so a spectral peak at row r moves to row factor * r, as formants and harmonics move between a
    longer and a shorter vocal tract.  (F, T) -> (F, T) float32"""
    n_rows = seg.shape[0]
    src = np.minimum(np.arange(n_rows, dtype=np.float64) / factor, n_rows - 1)  # (F,) source row positions
    lo = np.floor(src).astype(np.int64)  # (F,)
    hi = np.minimum(lo + 1, n_rows - 1)  # (F,)
    w = (src - lo).astype(np.float32)[:, None]  # (F, 1)
    return ((1.0 - w) * seg[lo] + w * seg[hi]).astype(np.float32)


class SegmentDataset(Dataset):
    """Segments of the utterances in ``labels``, cut from ``store`` and normalised per row."""

    def __init__(self, store: FeatureStore, labels: UtteranceLabels, mean: np.ndarray, std: np.ndarray,
                 segment_frames: int, hop: int, spec_augment: tuple[int, int] = (0, 0),
                 freq_warp: float = 0.0, utterance_norm: str = "none") -> None:
        if utterance_norm not in ("none", "mean"):
            raise ValueError(f"SegmentDataset: utterance_norm must be 'none' or 'mean', got {utterance_norm!r}")
        self.store, self.labels = store, labels
        self.utterance_norm = utterance_norm  # "mean": subtract the utterance's per-row mean first
        self._utterance_means: dict[int, np.ndarray] = {}  # local utterance -> (F, 1), computed once
        self.spec_augment = spec_augment  # (max frequency-mask rows, max time-mask frames), 0 = off
        self.freq_warp = freq_warp  # max relative frequency-axis warp of a training segment, 0 = off
        self.segment_frames = segment_frames
        self.set_normalisation(mean, std)
        lengths = store.lengths[labels.store_index]  # (U,)
        self.index = segment_index(lengths, segment_frames, hop)  # (S, 2) [local utt, offset]

    def _mask(self, seg: np.ndarray) -> None:
        """SpecAugment (Park et al. 2019): one frequency band and one time span set to the mean (0)."""
        rng = np.random.default_rng()  # fresh OS entropy per item: different masks every epoch and worker
        max_rows, max_frames = self.spec_augment
        n_rows, n_frames = seg.shape
        if max_rows:
            width = int(rng.integers(0, min(max_rows, n_rows) + 1))
            start = int(rng.integers(0, n_rows - width + 1))
            seg[start:start + width, :] = 0.0
        if max_frames:
            width = int(rng.integers(0, min(max_frames, n_frames) + 1))
            start = int(rng.integers(0, n_frames - width + 1))
            seg[:, start:start + width] = 0.0

    def _warp(self, seg: np.ndarray) -> np.ndarray:
        """`warp_rows` with one factor a ~ U(1 - w, 1 + w) per segment (fresh entropy per item)."""
        a = float(np.random.default_rng().uniform(1.0 - self.freq_warp, 1.0 + self.freq_warp))
        return warp_rows(seg, a)

    def _utterance_mean(self, local: int, frames: np.ndarray) -> np.ndarray:
        """Per-row mean (F, 1) of one utterance's frames, read once rather than once per segment and epoch."""
        mean = self._utterance_means.get(local)
        if mean is None:
            mean = self._utterance_means[local] = frames.mean(axis=1, dtype=np.float32, keepdims=True)
        return mean

    def set_normalisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Per-row statistics (F,) applied to every segment: (x - mean) / std."""
        self.mean = mean.astype(np.float32)[:, None]  # (F, 1)
        self.inv_std = (1.0 / np.maximum(std, 1e-5)).astype(np.float32)[:, None]  # (F, 1)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        local, offset = (int(v) for v in self.index[i])
        frames = self.store.frames(int(self.labels.store_index[local]))  # (F, T_utt) float16 memmap
        length = frames.shape[1]
        seg = cut_segment(frames, offset, self.segment_frames).astype(np.float32)  # (F, T_seg)
        if self.utterance_norm == "mean":
            seg -= self._utterance_mean(local, frames)  # (F, 1) over the whole utterance
        if self.freq_warp:
            seg = self._warp(seg)  # before normalisation: the warped rows are still log-mel values
        seg = (seg - self.mean) * self.inv_std
        valid = max(0, min(self.segment_frames, length - offset))
        seg[:, valid:] = 0.0  # padding is the normalised mean, i.e. 0
        if any(self.spec_augment):
            self._mask(seg)
        return {
            "x": torch.from_numpy(seg).unsqueeze(0),  # (1, F, T_seg)
            "emotion": torch.tensor(int(self.labels.emotion[local])),
            "gender": torch.tensor(int(self.labels.gender[local])),
            "speaker": torch.tensor(int(self.labels.speaker[local])),
            "utt": torch.tensor(int(self.labels.utt[local])),
        }
