"""`FrontEnd`: audio -> normalised fixed-width segments, the one preprocessing path of the package.

Training, `ser-mtl classify`, the Python API and the ONNX export all go through one `FrontEnd`, so a
trained model sees the same numbers on new audio as in training: ``frames`` (the `FeatureExtractor`:
silence removal, then e.g. a 128-row log spectrogram or a pretrained model's layers, rounded to float16 as
the feature store keeps it), ``segment`` (one (C, F, W) window standardised with the training split's
statistics, 0 past the end; C > 1 for layers kept apart) and ``offsets`` (window starts).
A checkpoint carries it in its ``SERDataModule`` entry; `FrontEnd.from_state_dict` rebuilds it and checks
that the extractor gives the features the model was trained on (for a pretrained model: its weights hash).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ser_mtl.data.extractor import FeatureExtractor, extractor_from_config
from ser_mtl.data.labels import LabelScheme
from ser_mtl.data.segments import cut_segment, segment_index

MIN_STD = 1e-5  # a row with no spread (e.g. digital silence in every training frame) is not blown up


class FrontEnd:
    """Feature settings, normalisation statistics, segmenting and class names of one trained model.

    Args:
        features: the `FeatureExtractor` (log spectrogram, pretrained model layers, ...).
        mean: (R,) per-row mean of the training split's frames (R = ``features.rows``).
        std: (R,) per-row standard deviation of the training split's frames.
        segment_frames: W, frames per segment.
        segment_hop: hop between the segments of one utterance at evaluation and classification.
        class_names: emotion class names in class-index order.
        label_scheme: the fitted `LabelScheme` whose classes are ``class_names`` (for av3/av5 its
            ``centroids``, (k, 2) valence, activation); None for a checkpoint that does not carry one.
        value_scales: value task (``ser_mtl/tasks.py``) -> (low, high) of the training corpus's scale, onto which
            a model's [0, 1] outputs map back (``ser-mtl classify``); empty without value tasks.
    """

    def __init__(self, features: FeatureExtractor, mean: Sequence[float] | np.ndarray,
                 std: Sequence[float] | np.ndarray, segment_frames: int, segment_hop: int, class_names: Sequence[str],
                 label_scheme: LabelScheme | None = None,
                 value_scales: dict[str, Sequence[float]] | None = None) -> None:
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean.shape != (features.rows,) or std.shape != (features.rows,):
            raise ValueError(f"FrontEnd: mean and std must be ({features.rows},) (features.rows), "
                             f"got {mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ValueError("FrontEnd: mean and std must be finite")
        if segment_frames < 1 or segment_hop < 1:
            raise ValueError(f"FrontEnd: segment_frames and segment_hop must be >= 1, got {segment_frames}, "
                             f"{segment_hop}")
        self.features = features
        self.mean, self.std = mean, std  # (F,) float64, as fitted
        self.segment_frames, self.segment_hop = int(segment_frames), int(segment_hop)
        self.class_names = list(class_names)
        if label_scheme is not None and list(label_scheme.classes) != self.class_names:
            raise ValueError(f"FrontEnd: the label scheme's classes {label_scheme.classes} are not the class names "
                             f"{self.class_names}")
        self.label_scheme = label_scheme
        self.value_scales = {task: (float(lo), float(hi)) for task, (lo, hi) in (value_scales or {}).items()}
        self._mean32 = mean.astype(np.float32)[:, None]  # (F, 1)
        self._inv_std32 = (1.0 / np.maximum(std, MIN_STD)).astype(np.float32)[:, None]  # (F, 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, F, W) of one segment: channels (layers kept apart), rows per channel, frames."""
        return self.features.channels, self.features.rows_per_channel, self.segment_frames

    def frames(self, wave: torch.Tensor) -> np.ndarray:
        """(T,) waveform at ``features.sample_rate`` -> (R, L) float16 frames, as the feature store keeps them."""
        return self.features.extract(wave)

    def segment(self, frames: np.ndarray, offset: int) -> np.ndarray:
        """(R, L) frames of one utterance -> the normalised (C, F, W) float32 window starting at ``offset``
        (R = C x F: a stored row block per channel)."""
        seg = cut_segment(frames, offset, self.segment_frames).astype(np.float32)  # (R, W)
        seg = (seg - self._mean32) * self._inv_std32
        valid = max(0, min(self.segment_frames, frames.shape[1] - offset))
        seg[:, valid:] = 0.0  # padding is the normalised mean
        return seg.reshape(self.input_shape)  # (C, F, W)

    def offsets(self, length: int) -> np.ndarray:
        """(S,) start frames of the segments of an utterance of ``length`` frames (none when it is 0)."""
        return segment_index(np.array([length], dtype=np.int64), self.segment_frames, self.segment_hop)[:, 1]

    def batches(self, frames: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All segments of one utterance, ``batch_size`` at a time: (offsets (b,), x (b, C, F, W) float32);
        a long recording costs its frames, not all its (overlapping) segments."""
        offsets = self.offsets(frames.shape[1])
        for start in range(0, len(offsets), batch_size):
            chunk = offsets[start:start + batch_size]
            yield chunk, np.stack([self.segment(frames, int(o)) for o in chunk])  # (b, C, F, W)

    def state_dict(self) -> dict[str, Any]:
        """Plain-JSON description (the checkpoint's ``SERDataModule`` keys, the ONNX export's settings)."""
        state = {"features": self.features.config(), "feature_settings": self.features.settings(),
                 "mean": self.mean.tolist(), "std": self.std.tolist(),
                 "segment_frames": self.segment_frames, "segment_hop": self.segment_hop,
                 "classes": list(self.class_names)}
        if self.label_scheme is not None:
            state["label_scheme"] = self.label_scheme.state_dict()
        if self.value_scales:  # only models with value tasks: other checkpoints keep their bytes
            state["value_scales"] = {task: list(scale) for task, scale in self.value_scales.items()}
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], source: str = "checkpoint",
                        features: FeatureExtractor | None = None) -> FrontEnd:
        """Inverse of `state_dict`; ``source`` names the file in errors. ``features`` replaces the recorded
        extractor (e.g. the same model in another folder); either way it must give the recorded features
        (`FeatureExtractor.check_recorded`: another weights hash is refused, naming both)."""
        missing = [k for k in ("features", "mean", "std", "segment_frames", "segment_hop", "classes")
                   if state.get(k) is None]
        if missing:
            raise ValueError(f"{source}: no preprocessing state ({', '.join(missing)} missing); was it written "
                             "by `ser-mtl fit` after the data were set up?")
        scheme = None
        if state.get("label_scheme"):
            try:
                scheme = LabelScheme.from_state(state["label_scheme"])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{source}: unusable label scheme in the preprocessing state: {err!r}") from None
        try:
            extractor = features if features is not None else extractor_from_config(state["features"])
            extractor.check_recorded(state.get("feature_settings"), source)
            return cls(extractor, state["mean"], state["std"], state["segment_frames"],
                       state["segment_hop"], state["classes"], label_scheme=scheme,
                       value_scales=state.get("value_scales"))
        except ValueError as err:
            raise ValueError(err if str(err).startswith(source) else f"{source}: {err}") from None

    def __repr__(self) -> str:
        return (f"FrontEnd({type(self.features).__name__}, {self.features.rows} rows, {self.features.sample_rate} Hz, segments of "
                f"{self.segment_frames} frames every {self.segment_hop}, classes {self.class_names})")
