"""The front-end interface: what turns one waveform into the (rows, frames) matrix the feature store keeps.

Every feature type is a `FeatureExtractor` chosen in the config (``data.features`` with a ``class_path``;
the log spectrogram, ``ser_mtl/data/features.py``, is the default; pretrained speech models are in
``ser_mtl/data/pretrained.py``). The store, `FrontEnd`, the DataModule, ``classify``, the Python API,
``export`` and ``--cv.plan`` know only this interface:

- ``sample_rate``: Hz the audio is resampled to before ``extract``;
- ``rows``: rows of the stored matrix, ``channels`` x rows per channel (``channels`` > 1 when several
  layers of a model are kept apart, for a learned weighted sum in the network's input stage);
- ``frames_per_second``: frame rate of the output (100 for a 10 ms hop, 50 for wav2vec 2.0-like models);
- ``key()``: a stable 12-hex-digit hash of everything that decides the numbers (the store hashes it);
- ``settings()``: the same as plain JSON (recorded in the store and the checkpoint, compared on load);
- ``extract(wave)``: (T,) float waveform at ``sample_rate`` -> (rows, frames) float16, or `NoSpeechError`.

Silence removal (paper 4.2) is shared: `remove_silence` is the one path, for every extractor.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ser_mtl.config_parts import build_part

_AMIN = 1e-10  # librosa's floor on power before dB, so an all-zero wave counts as non-silent
SILENCE_FLOOR_DBFS = -90.0  # below 16-bit quantisation noise: nothing in the file was ever sound


class NoSpeechError(ValueError):
    """Audio with nothing to featurise: digital silence, or less speech than the extractor needs."""


class FeatureModelError(ValueError):
    """A pretrained feature model that cannot be used (not on disk, other weights than a checkpoint's)."""


def settings_key(settings: dict[str, Any]) -> str:
    """A 12-hex-digit hash of JSON ``settings`` (sorted keys): equal settings, equal keys in every process."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


class FeatureExtractor(abc.ABC):
    """(T,) waveform -> (rows, frames) float16 features; see the module docstring for the contract.

    Subclasses set or compute ``sample_rate``, ``rows``, ``frames_per_second`` and implement ``settings``,
    ``speech_only`` and ``features``; ``channels`` (1), ``extract_batch`` (one at a time), ``init_args``,
    ``default_device`` ("cpu") and ``parallel_build`` (True: store builds may run one per worker process)
    have defaults.
    """

    channels: int = 1
    default_device: str = "cpu"
    parallel_build: bool = True

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Hz the waveform must have."""

    @property
    @abc.abstractmethod
    def rows(self) -> int:
        """Rows of one utterance's (rows, frames) matrix: ``channels`` x rows per channel."""

    @property
    @abc.abstractmethod
    def frames_per_second(self) -> float:
        """Output frames per second of (trimmed) audio."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """Plain-JSON description of everything that decides the numbers (a model's weights hash included)."""

    @abc.abstractmethod
    def speech_only(self, wave: torch.Tensor) -> torch.Tensor:
        """(T,) -> (T',) the samples the features are computed from (silence removed when configured);
        `NoSpeechError` when nothing usable is left."""

    @abc.abstractmethod
    def features(self, speech: torch.Tensor) -> torch.Tensor:
        """(T',) samples from ``speech_only`` -> (rows, frames) float32 on ``speech``'s device."""

    def key(self) -> str:
        """12 hex digits hashing ``settings()``."""
        return settings_key(self.settings())

    @property
    def rows_per_channel(self) -> int:
        return self.rows // self.channels

    def extract(self, wave: torch.Tensor) -> np.ndarray:
        """(T,) float waveform at ``sample_rate`` -> (rows, frames) float16 on the CPU, as the store keeps it."""
        return self.features(self.speech_only(checked_wave(wave))).cpu().numpy().astype(np.float16)

    def extract_batch(self, waves: Sequence[torch.Tensor]) -> list[np.ndarray | NoSpeechError]:
        """``extract`` of each wave (a `NoSpeechError` in place of an unusable one); extractors that gain
        from batching override it with the same numbers."""
        out: list[np.ndarray | NoSpeechError] = []
        for wave in waves:
            try:
                out.append(self.extract(wave))
            except NoSpeechError as err:
                out.append(err)
        return out

    def speech_key(self) -> list[Any]:
        """What decides ``speech_only``'s samples (the openSMILE baselines' cache key): the silence rule."""
        settings = self.settings()
        return [settings.get(k) for k in ("trim_silence", "silence_db", "silence_frame_ms", "silence_hop_ms")]

    def describe(self) -> str:
        """One line for the start of a fit: what the features are, their rows and frame rate."""
        layers = f" ({self.channels} layers x {self.rows_per_channel})" if self.channels > 1 else ""
        return f"{type(self).__name__}, {self.rows} rows{layers} at {self.frames_per_second:g} frames/s"

    def to(self, device: str | torch.device) -> FeatureExtractor:
        """Run on ``device`` from now on (the spectrogram follows the wave's device; models move)."""
        return self

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this extractor (``config``)."""
        return {}

    def config(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}``: what ``data.features`` holds, and what a checkpoint keeps."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": self.init_args()}

    def check_recorded(self, recorded: dict[str, Any] | None, source: str) -> None:
        """ValueError naming ``source`` when ``recorded`` settings (a checkpoint's) are not this extractor's."""
        now = self.settings()
        if recorded is not None and recorded != now:
            differ = sorted(k for k in {*recorded, *now} if recorded.get(k) != now.get(k))
            raise FeatureModelError(f"{source}: trained on other features than these settings give (they differ in "
                                    f"{', '.join(differ)}: trained with {({k: recorded.get(k) for k in differ})}, "
                                    f"now {({k: now.get(k) for k in differ})})")


def checked_wave(wave: torch.Tensor) -> torch.Tensor:
    """A non-empty floating (T,) waveform as float32, or ValueError."""
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"feature extraction: expected a non-empty (T,) waveform, got shape {tuple(wave.shape)}")
    if not wave.is_floating_point():
        raise ValueError(f"feature extraction: expected a floating-point waveform, got {wave.dtype}")
    return wave.float()


def frame_power(wave: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """(1 + T // hop,) mean square (RMS^2) of centred, zero-padded frames of ``wave`` (T,), as librosa's RMS."""
    padded = torch.nn.functional.pad(wave[None, None], (frame_length // 2, frame_length // 2))[0, 0]
    return padded.unfold(0, frame_length, hop_length).pow(2).mean(dim=1)


def nonsilent_samples(power: torch.Tensor, top_db: float, hop_length: int, n_samples: int) -> torch.Tensor:
    """(T,) bool: frames within ``top_db`` of the loudest, frame f covering [f * hop, (f + 1) * hop)."""
    power = power.clamp_min(_AMIN)
    keep = 10.0 * torch.log10(power / power.max()) > -top_db  # (n_frames,)
    return keep[torch.arange(n_samples, device=power.device) // hop_length]  # (T,)


def remove_silence(wave: torch.Tensor, sample_rate: int, trim: bool, top_db: float, frame_ms: float,
                   hop_ms: float, min_samples: int, min_what: str) -> torch.Tensor:
    """``wave`` (T,) with silent stretches removed (``trim``: as ``librosa.effects.split``, RMS frames of
    ``frame_ms`` every ``hop_ms`` more than ``top_db`` below the loudest, pauses inside included), from one
    pass over its frame powers. `NoSpeechError` when the loudest frame is below `SILENCE_FLOOR_DBFS` (the
    relative rule alone keeps all of an all-zero file) or fewer than ``min_samples`` (``min_what``) are left."""
    frame, hop = round(sample_rate * frame_ms / 1000), round(sample_rate * hop_ms / 1000)
    power = frame_power(wave, frame, hop)  # (n_frames,)
    level = 10.0 * np.log10(max(float(power.max()), 1e-30))  # dB relative to full scale (|x| = 1)
    if level < SILENCE_FLOOR_DBFS:
        raise NoSpeechError(f"no frame above the silence threshold (loudest {frame}-sample frame at "
                            f"{level:.0f} dBFS, floor {SILENCE_FLOOR_DBFS:.0f} dBFS): digital silence")
    if trim:
        wave = wave[nonsilent_samples(power, top_db, hop, wave.shape[0])]  # (T',)
    if len(wave) < min_samples:
        raise NoSpeechError(f"{len(wave)} samples of speech after silence removal, fewer than {min_what} "
                            f"({min_samples} samples)")
    return wave


def extractor_from_config(spec: FeatureExtractor | dict[str, Any]) -> FeatureExtractor:
    """A `FeatureExtractor` from ``data.features`` as a checkpoint or ``cv.json`` keeps it: an instance, a
    ``{"class_path", "init_args"}`` dict (resolved by jsonargparse, as the command line does), or the
    plain field dict of the log spectrogram written before extractors had a class path."""
    if isinstance(spec, FeatureExtractor):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"data.features: expected a feature extractor or its {{class_path, init_args}}, "
                         f"got {type(spec).__name__}")
    if "class_path" not in spec:  # a checkpoint written before front-ends had a class path
        spec = {"class_path": "ser_mtl.data.features.LogSpectrogram", "init_args": spec}
    return build_part(spec, FeatureExtractor)
