"""Using a trained model from Python: emotion posteriors (and a value task's values) for audio files, folders
and arrays (README).

The audio goes through the checkpoint's `FrontEnd`, as in training; a file's posterior is the mean of
its segments' (paper 4.2). ``ser-mtl classify`` is `EmotionRecognizer` writing CSV or JSON. A recording
longer than ``chunk_seconds`` is read, featurised and silence-trimmed one chunk at a time (relative to
the chunk's loudest frame), bounding memory; a shorter file is processed exactly as in training.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ser_mtl.checkpoint_io import CheckpointError, read_checkpoint
from ser_mtl.data.audio import audio_chunks, mono_at_rate
from ser_mtl.data.extractor import NoSpeechError, extractor_from_config
from ser_mtl.data.labels import LabelScheme
from ser_mtl.data.manifest import CorpusError
from ser_mtl.frontend import FrontEnd

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


@dataclass
class Prediction:
    """The emotion posterior of one recording (or the reason it has none).

    Attributes:
        source: the file path, or ``"<array>"`` for `EmotionRecognizer.classify_array`.
        label: the most probable class, None when skipped.
        probs: class name -> posterior (mean over segments), empty when skipped.
        n_segments: segments scored.
        segment_probs: (S, C) posteriors per segment, when asked for with ``segments=True``.
        segment_offsets: (S,) start of each segment in frames (``frontend.features.frames_per_second`` per
            second: 100 for the spectrogram, 50 for wav2vec 2.0-like models) of the speech left after silence
            removal, counted over the whole file; with ``segments=True``.
        skipped: why the recording could not be classified (unreadable, no speech, ...), else None.
        values: value task (``valence``, ``age``, ...) -> the mean of its segments' predictions on the training
            corpus's scale (e.g. IEMOCAP's 1-5, years); empty for a model without value tasks.
    """

    source: str
    label: str | None = None
    probs: dict[str, float] = field(default_factory=dict)
    n_segments: int = 0
    segment_probs: np.ndarray | None = None
    segment_offsets: np.ndarray | None = None
    skipped: str | None = None
    values: dict[str, float] = field(default_factory=dict)


def load_checkpoint(ckpt: str | os.PathLike, device: str | torch.device = "cpu", features_model: str | None = None):
    """(`MultiTaskAAE` in eval mode on ``device``, its `FrontEnd`) from a ``ser-mtl fit`` checkpoint;
    `CheckpointError` naming the file for a missing, damaged, foreign or code-carrying file, or for a
    pretrained front-end whose weights are not the ones it was trained with. ``features_model``: where the
    pretrained feature model is on this machine, when not where the checkpoint says (same weights)."""
    from ser_mtl.models.aae import MultiTaskAAE

    path = Path(ckpt)
    checkpoint = read_checkpoint(path)
    state = checkpoint.get("SERDataModule") or {}
    try:
        frontend = FrontEnd.from_state_dict(state, source=str(path),
                                            features=_moved_features(state, features_model))
    except (TypeError, ValueError) as err:
        raise CheckpointError(str(err)) from None
    accepted = inspect.signature(MultiTaskAAE.__init__).parameters
    # LightningCLI also records `_instantiator`/`_class_path`; keep the model's own arguments only
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted}
    hparams["init_from"] = None  # the checkpoint's own weights are loaded below
    try:
        model = MultiTaskAAE(**hparams)
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: the weights do not fit the model its hyper-parameters describe: "
                              f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval(), frontend


def _moved_features(state: dict, features_model: str | None):
    """The checkpoint's extractor with its pretrained model read from ``features_model`` (None: as recorded)."""
    if features_model is None:
        return None
    spec = state.get("features")
    if not (isinstance(spec, dict) and "model" in spec.get("init_args", {})):
        raise CheckpointError(f"features_model={features_model}: the checkpoint's front-end has no pretrained model "
                              "to point elsewhere")
    return extractor_from_config({**spec, "init_args": {**spec["init_args"], "model": str(features_model)}})


def collect_audio_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named in ``inputs``, with folders searched recursively for audio suffixes (sorted; macOS
    ``._`` resource files left out). FileNotFoundError naming the first input that does not exist."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                            and not p.name.startswith("._") and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{item}: no such audio file or folder")
    return files


class EmotionRecognizer:
    """A trained model and its front-end, ready for new recordings.

    Args:
        model: a `MultiTaskAAE` with an emotion head.
        frontend: the preprocessing it was trained with.
        device: where features and the network run (``cpu``, ``cuda``, ``cuda:1``).
        batch_size: segments per forward pass.
        chunk_seconds: recordings longer than this are processed in chunks of this length (bounded memory).
    """

    def __init__(self, model, frontend: FrontEnd, device: str | torch.device = "cpu", batch_size: int = 64,
                 chunk_seconds: float = 600.0) -> None:
        if batch_size < 1 or chunk_seconds <= 0:
            raise ValueError(f"EmotionRecognizer: need batch_size >= 1 and chunk_seconds > 0, got {batch_size}, "
                             f"{chunk_seconds}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.frontend = frontend
        frontend.features.to(self.device)  # a pretrained front-end runs beside the network
        self.batch_size, self.chunk_seconds = batch_size, chunk_seconds

    @classmethod
    def from_checkpoint(cls, ckpt: str | os.PathLike, device: str | torch.device = "cpu",
                        features_model: str | None = None, **kwargs) -> EmotionRecognizer:
        """Load ``ckpt`` (see `load_checkpoint`, ``features_model`` included); ``kwargs`` go to the constructor."""
        model, frontend = load_checkpoint(ckpt, device, features_model)
        return cls(model, frontend, device, **kwargs)

    @property
    def classes(self) -> list[str]:
        return list(self.frontend.class_names)

    @property
    def label_scheme(self) -> LabelScheme | None:
        """The checkpoint's fitted `LabelScheme` (for av3/av5 with its ``centroids``), None if it has none."""
        return self.frontend.label_scheme

    def classify(self, inputs: str | os.PathLike | Iterable[str | os.PathLike],
                 segments: bool = False) -> list[Prediction]:
        """One `Prediction` per audio file of ``inputs`` (files and folders), skipped ones included."""
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        return [self.classify_file(path, segments) for path in collect_audio_files(inputs)]

    def classify_file(self, path: str | os.PathLike, segments: bool = False) -> Prediction:
        """The posterior of one audio file; an unusable file gives a Prediction with ``skipped`` set."""
        sr = self.frontend.features.sample_rate
        return self._predict(str(path), lambda: audio_chunks(path, sr, self.chunk_seconds), segments)

    def classify_array(self, wave: np.ndarray | torch.Tensor, sample_rate: int, segments: bool = False,
                       source: str = "<array>") -> Prediction:
        """The posterior of samples in [-1, 1]: (T,) mono or (T, C) channels-last, any sample rate."""
        data = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
        if data.ndim not in (1, 2) or data.shape[0] == 0:
            raise ValueError(f"classify_array: expected (T,) or (T, C) samples with T > 0, got shape {data.shape}")
        data = data.astype(np.float32).reshape(data.shape[0], -1)  # (T, C)
        sr = self.frontend.features.sample_rate
        return self._predict(source, lambda: [mono_at_rate(data, int(sample_rate), sr, source)], segments)

    @property
    def value_tasks(self) -> list[str]:
        """The model's value tasks (``ser_mtl/tasks.py``) whose scale the checkpoint records."""
        return [task for task in self.model.tasks if task in self.frontend.value_scales]

    @torch.no_grad()
    def segment_posteriors(self, frames: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(offsets (b,), posteriors (b, C)) of the segments of (F, L) frames, ``batch_size`` at a time."""
        for offsets, probs, _ in self.segment_outputs(frames):
            yield offsets, probs

    @torch.no_grad()
    def segment_outputs(self, frames: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """(offsets (b,), emotion posteriors (b, C) (C = 0 without the emotion head), values: task -> (b,) on
        the corpus's scale) of the segments of (F, L) frames, ``batch_size`` at a time."""
        for offsets, x in self.frontend.batches(frames, self.batch_size):
            x = torch.from_numpy(x).to(self.device)
            z = self.model.encode(x)
            probs = (self.model.head_output("emotion", z).softmax(dim=-1).double().cpu().numpy()
                     if "emotion" in self.model.heads else np.zeros((len(offsets), 0)))  # (b, C)
            values = {}
            for task in self.value_tasks:
                low, high = self.frontend.value_scales[task]
                values[task] = low + self.model.head_output(task, z).double().cpu().numpy() * (high - low)  # (b,)
            yield offsets, probs, values

    def _predict(self, source: str, waves: Callable[[], Iterable[torch.Tensor]],
                 segments: bool) -> Prediction:
        """The posterior of the recording whose (T,) chunks ``waves()`` yields; unusable: ``skipped`` set."""
        has_emotion = "emotion" in self.model.heads
        total, count, shift = np.zeros(len(self.classes) if has_emotion else 0), 0, 0
        value_sums = dict.fromkeys(self.value_tasks, 0.0)
        kept_probs, kept_offsets = [], []
        try:
            for wave in waves():
                frames = self.frontend.frames(wave.to(self.device))  # (F, L_k)
                for offsets, probs, values in self.segment_outputs(frames):
                    total += probs.sum(axis=0)
                    count += len(offsets)
                    for task, v in values.items():
                        value_sums[task] += float(v.sum())
                    if segments:
                        kept_probs.append(probs.astype(np.float32))
                        kept_offsets.append(offsets + shift)
                shift += frames.shape[1]
        except CorpusError as err:
            return Prediction(source=source, skipped=str(err))
        except NoSpeechError as err:
            return Prediction(source=source, skipped=f"{source}: {err}")
        if count == 0:
            return Prediction(source=source, skipped=f"{source}: no speech left after silence removal")
        mean = total / count  # (C,)
        pred = Prediction(source=source, label=self.classes[int(mean.argmax())] if has_emotion else None,
                          n_segments=count, probs={c: float(v) for c, v in zip(self.classes, mean)} if has_emotion else {},
                          values={task: value / count for task, value in value_sums.items()})
        if segments:
            pred.segment_probs = np.concatenate(kept_probs)  # (S, C)
            pred.segment_offsets = np.concatenate(kept_offsets)  # (S,)
        return pred
