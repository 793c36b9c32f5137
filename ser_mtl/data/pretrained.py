"""Frozen features of pretrained speech models (Hugging Face ``transformers``): WavLM, HuBERT, wav2vec 2.0,
data2vec-audio (the "wav2vec2-like" models: a strided conv stack, then a transformer) and the Whisper encoder.
``data.features: {class_path: ser_mtl.data.pretrained.PretrainedFeatures, init_args: {model: ..., layers: [6]}}``
stores the chosen hidden states, averaged (``mean``) or kept apart (``stack``, for a learned weighted sum).

- **Input**: the model folder's own feature extractor (``Wav2Vec2FeatureExtractor``: per-utterance zero mean,
  unit variance when ``do_normalize``; ``WhisperFeatureExtractor``: log-mel of a 30 s window), applied to
  each (silence-trimmed) piece alone, so batching never changes the normalisation.
- **Frames**: wav2vec2-like: L = floor((L - k) / s) + 1 per conv layer, ``sample_rate / prod(conv_stride)``
  frames/s; Whisper: ceil((n // hop + 1) / 2) frames of a window (50/s), the rest of the 30 s dropped.
- **Long recordings**: cut into equal pieces of at most ``chunk_seconds`` (Whisper: at most its 30 s window),
  each run alone, frames concatenated.
- **Batching**: pieces sorted by length, grouped up to ``batch_seconds`` of padded audio, zero-padded with an
  ``attention_mask`` (passed only when the batch is padded). Models with ``feat_extract_norm == "group"``
  (wav2vec2-base, hubert-base, wavlm-base(+)) normalise the first conv layer's output over *time*
  (GroupNorm with one group per channel), so zero padding changes every frame: there only pieces of
  identical length share a batch. Batched equals one at a time (``tests/test_pretrained_features.py``).
- **Layers**: ``model(...).hidden_states[i]`` (transformers 5: for the Large, stable-layer-norm models the
  last entry is *before* the final LayerNorm, unlike 4.x); layers after the highest one asked for never run.
- **Key**: the model name (hub id, or the folder's basename so a moved folder keeps its store), the sha256 of
  the weight and config files, layers, the transformers major version and every setting that changes the
  numbers (not the device or batch size).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ser_mtl.data import extractor as ex
from ser_mtl.data.extractor import FeatureExtractor, FeatureModelError, NoSpeechError
from ser_mtl.data.model_files import load_frozen_model, resolve_model_folder, weights_sha256


def conv_frames(n_samples: int, conv: Sequence[tuple[int, int]]) -> int:
    """Frames a conv stack of (kernel, stride) layers makes of ``n_samples``: L = floor((L - k) / s) + 1."""
    for kernel, stride in conv:
        n_samples = max((n_samples - kernel) // stride + 1, 0)
    return n_samples


def plan_batches(lengths: Sequence[int], budget: int, equal_only: bool) -> list[list[int]]:
    """Indices of ``lengths`` in batches: longest first, each at most ``budget`` padded samples (a longer
    piece alone); ``equal_only``: only identical lengths share a batch (GroupNorm over time)."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches:
            first = lengths[batches[-1][0]]  # the longest of the batch: the padded length
            if (len(batches[-1]) + 1) * first <= budget and (not equal_only or lengths[i] == first):
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches


def split_pieces(n_samples: int, max_samples: int) -> list[tuple[int, int]]:
    """(start, stop) of ceil(n / max) equal pieces (sizes differ by at most one sample)."""
    n_pieces = -(-n_samples // max_samples)
    bounds = [round(k * n_samples / n_pieces) for k in range(n_pieces + 1)]
    return list(itertools.pairwise(bounds))


def _transformers_major() -> str:
    """The transformers major version: part of the key (5.x moved the Large models' last hidden state)."""
    from transformers import __version__

    return __version__.split(".")[0]


@dataclass(frozen=True)
class _ModelInfo:
    """What the config and preprocessor config say (read without the weights)."""

    folder: str
    name: str  # hub id as given, or the folder's basename
    model_type: str
    whisper: bool
    num_layers: int  # transformer layers; hidden_states has num_layers + 1 entries
    hidden_size: int
    sample_rate: int
    conv: tuple[tuple[int, int], ...]  # (kernel, stride) of the conv stack (wav2vec2-like)
    group_norm: bool  # feat_extract_norm == "group": GroupNorm over time in the first conv layer
    hop_length: int  # Whisper: mel hop (160); wav2vec2-like: prod(conv_stride)
    window: int  # Whisper: samples of its fixed input window (30 s); 0 otherwise
    max_frames: int  # Whisper: max_source_positions
    min_samples: int  # receptive field of one frame (wav2vec2-like) or one n_fft window (Whisper)
    max_piece: int  # samples: chunk_seconds, at most Whisper's window
    layers: tuple[int, ...]  # resolved, in [0, num_layers]


class PretrainedFeatures(FeatureExtractor):
    """Hidden states of a frozen pretrained speech model as (rows, frames) features; see the module docstring.

    Args:
        model: a Hugging Face hub id (``microsoft/wavlm-base-plus``) or a local folder (``save_pretrained``).
        layers: indices into ``hidden_states`` (0: before the first transformer layer; negative: from the end).
        layer_mode: ``mean`` of the layers (rows = hidden size) or ``stack`` (rows = len(layers) x hidden size,
            layer after layer, ``channels`` = len(layers)).
        dtype: ``float32``, or ``bfloat16`` autocast.
        trim_silence, silence_db, silence_frame_ms, silence_hop_ms: silence removal as `LogSpectrogram`'s.
        batch_seconds: at most this much padded audio per forward pass (not in the key: same numbers).
        chunk_seconds: longer (trimmed) recordings are cut into equal pieces of at most this length.
    """

    parallel_build = False  # one model in the building process, not one per worker

    def __init__(self, model: str, layers: list[int], layer_mode: Literal["mean", "stack"] = "mean",
                 dtype: Literal["float32", "bfloat16"] = "float32", trim_silence: bool = True,
                 silence_db: float = 40.0, silence_frame_ms: float = 64.0, silence_hop_ms: float = 16.0,
                 batch_seconds: float = 200.0, chunk_seconds: float = 30.0) -> None:
        if not layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
            raise ValueError(f"PretrainedFeatures.layers: expected a non-empty list of ints, got {layers!r}")
        if layer_mode not in ("mean", "stack") or dtype not in ("float32", "bfloat16"):
            raise ValueError(f"PretrainedFeatures: layer_mode must be 'mean' or 'stack' (got {layer_mode!r}), "
                             f"dtype 'float32' or 'bfloat16' (got {dtype!r})")
        if not (silence_db > 0 and 0 < silence_hop_ms <= silence_frame_ms and batch_seconds > 0
                and chunk_seconds > 0):
            raise ValueError("PretrainedFeatures: expected silence_db > 0, 0 < silence_hop_ms <= silence_frame_ms, "
                             "batch_seconds > 0 and chunk_seconds > 0")
        self.model, self.layers, self.layer_mode, self.dtype = str(model), list(layers), layer_mode, dtype
        self.trim_silence, self.silence_db = bool(trim_silence), float(silence_db)
        self.silence_frame_ms, self.silence_hop_ms = float(silence_frame_ms), float(silence_hop_ms)
        self.batch_seconds, self.chunk_seconds = float(batch_seconds), float(chunk_seconds)
        self._device: torch.device | None = None
        self._info_cache: _ModelInfo | None = None
        self._sha: str | None = None
        self._model: torch.nn.Module | None = None
        self._pre: Any = None  # the folder's feature extractor (AutoFeatureExtractor)

    # -- configuration, read without the weights ----------------------------------------------
    def _info(self) -> _ModelInfo:
        if self._info_cache is None:
            self._info_cache = self._read_info()
        return self._info_cache

    def _read_info(self) -> _ModelInfo:
        from transformers import AutoConfig

        folder = resolve_model_folder(self.model)
        try:
            cfg = AutoConfig.from_pretrained(folder)
            pre = self._preprocessor(folder)
        except (OSError, ValueError, KeyError) as err:
            raise FeatureModelError(f"{self.model} ({folder}): not a transformers model folder with config.json "
                                    f"and preprocessor_config.json ({type(err).__name__}: {err})") from None
        whisper = cfg.model_type == "whisper"
        if not whisper and not (hasattr(cfg, "conv_kernel") and hasattr(cfg, "conv_stride")):
            raise FeatureModelError(f"{self.model}: model type {cfg.model_type!r} is neither wav2vec2-like "
                                    f"(conv_kernel/conv_stride: WavLM, HuBERT, wav2vec 2.0, data2vec-audio) nor Whisper")
        num_layers = cfg.encoder_layers if whisper else cfg.num_hidden_layers
        conv = () if whisper else tuple(zip(map(int, cfg.conv_kernel), map(int, cfg.conv_stride)))
        receptive, jump = 1, 1
        for kernel, stride in conv:
            receptive, jump = receptive + (kernel - 1) * jump, jump * stride
        n = num_layers + 1
        if not all(-n <= i < n for i in self.layers):
            raise ValueError(f"PretrainedFeatures.layers {self.layers}: {self.model} has {n} hidden states "
                             f"(num_hidden_layers {num_layers} + 1); valid indices are {-n}..{n - 1}")
        resolved, piece = tuple(i % n for i in self.layers), round(self.chunk_seconds * pre.sampling_rate)
        if len(set(resolved)) < len(resolved):
            raise ValueError(f"PretrainedFeatures.layers {self.layers}: the same layer twice (resolved {resolved})")
        info = _ModelInfo(
            folder=str(folder), name=self.model if not Path(self.model).expanduser().is_dir() else folder.name,
            model_type=cfg.model_type, whisper=whisper, num_layers=num_layers,
            hidden_size=cfg.d_model if whisper else cfg.hidden_size, sample_rate=int(pre.sampling_rate), conv=conv,
            group_norm=getattr(cfg, "feat_extract_norm", None) == "group",
            hop_length=int(pre.hop_length) if whisper else math.prod(s for _, s in conv),
            window=int(pre.n_samples) if whisper else 0, max_frames=cfg.max_source_positions if whisper else 0,
            min_samples=int(pre.n_fft) if whisper else receptive, layers=resolved,
            max_piece=min(piece, int(pre.n_samples)) if whisper else piece)
        if info.max_piece < 2 * info.min_samples:
            raise ValueError(f"PretrainedFeatures.chunk_seconds {self.chunk_seconds}: pieces must hold at least "
                             f"twice the {info.min_samples}-sample receptive field")
        return info

    def _preprocessor(self, folder: str | os.PathLike) -> Any:
        if self._pre is None:
            from transformers import AutoFeatureExtractor

            self._pre = AutoFeatureExtractor.from_pretrained(folder)
        return self._pre

    @property
    def sample_rate(self) -> int:
        return self._info().sample_rate

    @property
    def hidden_size(self) -> int:
        return self._info().hidden_size

    @property
    def num_layers(self) -> int:
        """Transformer layers of the model (``hidden_states`` has one more entry)."""
        return self._info().num_layers

    @property
    def channels(self) -> int:  # type: ignore[override]
        return len(self.layers) if self.layer_mode == "stack" else 1

    @property
    def rows(self) -> int:
        return self.channels * self.hidden_size

    @property
    def frames_per_second(self) -> float:
        info = self._info()
        return info.sample_rate / info.hop_length / (2 if info.whisper else 1)

    @property
    def weights_sha256(self) -> str:
        """sha256 of the folder's weight and config files (`weights_sha256`), read once per process."""
        if self._sha is None:
            self._sha = weights_sha256(self._info().folder)
        return self._sha

    @property
    def default_device(self) -> str:  # type: ignore[override]
        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def device(self) -> torch.device:
        return self._device if self._device is not None else torch.device(self.default_device)

    def settings(self) -> dict[str, Any]:
        info = self._info()
        return {"model": info.name, "weights_sha256": self.weights_sha256, "layers": list(info.layers),
                "layer_mode": self.layer_mode, "dtype": self.dtype, "trim_silence": self.trim_silence,
                "silence_db": self.silence_db, "silence_frame_ms": self.silence_frame_ms,
                "silence_hop_ms": self.silence_hop_ms, "chunk_seconds": self.chunk_seconds,
                "sample_rate": info.sample_rate, "type": info.model_type, "transformers": _transformers_major()}

    def init_args(self) -> dict[str, Any]:
        return {"model": self.model, "layers": list(self.layers), "layer_mode": self.layer_mode, "dtype": self.dtype,
                "trim_silence": self.trim_silence, "silence_db": self.silence_db,
                "silence_frame_ms": self.silence_frame_ms, "silence_hop_ms": self.silence_hop_ms,
                "batch_seconds": self.batch_seconds, "chunk_seconds": self.chunk_seconds}

    def describe(self) -> str:
        info = self._info()
        return (f"{info.model_type} {info.name} (weights sha256 {self.weights_sha256[:12]}), hidden states "
                f"{list(info.layers)} of 0..{info.num_layers} ({self.layer_mode}): {self.rows} rows at "
                f"{self.frames_per_second:g} frames/s, {self.dtype} on {self.device}")

    def check_recorded(self, recorded: dict[str, Any] | None, source: str) -> None:
        now = self.weights_sha256
        if recorded is not None and "weights_sha256" in recorded and recorded["weights_sha256"] != now:
            raise FeatureModelError(
                f"{source}: trained on features of other weights: it records weights_sha256 "
                f"{recorded['weights_sha256']}, but {self.model} ({self._info().folder}) has {now}; point "
                f"data.features.init_args.model at the model the checkpoint was trained with")
        if recorded is not None and recorded.get("transformers") != _transformers_major():
            warnings.warn(f"{source}: features of transformers {recorded.get('transformers')}.x, this is "
                          f"{_transformers_major()}.x (the last hidden state of Large models moved before the final "
                          "LayerNorm in 5.x); the other settings are checked", stacklevel=2)
            recorded = {**recorded, "transformers": _transformers_major()}
        super().check_recorded(recorded, source)

    # -- the model ---------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> PretrainedFeatures:
        self._device = torch.device(device)
        if self._model is not None:
            self._model.to(self._device)
        return self

    def module(self) -> torch.nn.Module:
        """The frozen model (the Whisper encoder), loaded on first use on ``device``."""
        if self._model is None:
            info = self._info()
            self._model = load_frozen_model(info.folder, info.whisper, min(info.num_layers, max(info.layers) + 1),
                                            self.device)
        return self._model

    def check(self) -> PretrainedFeatures:
        """Resolve the model folder, validate the settings, hash the weights and load the model now."""
        _ = self.weights_sha256, self.module()
        return self

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers / spawned processes get the settings, never a copy of the model.
        return {**self.__dict__, "_model": None, "_pre": None}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.init_args() == self.init_args()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self.init_args().items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.init_args().items())})"

    # -- features ----------------------------------------------------------------------------
    def speech_only(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave`` after silence removal; `NoSpeechError` for digital silence or less than one receptive field."""
        info = self._info()
        return ex.remove_silence(wave, info.sample_rate, self.trim_silence, self.silence_db, self.silence_frame_ms,
                              self.silence_hop_ms, info.min_samples,
                              f"the model's receptive field ({info.min_samples / info.sample_rate * 1000:g} ms)")

    def features(self, speech: torch.Tensor) -> torch.Tensor:
        """(T,) samples from ``speech_only`` -> (rows, frames) float32 on the CPU."""
        return self.features_batch([speech])[0]

    def extract(self, wave: torch.Tensor) -> np.ndarray:
        """(T,) waveform -> (rows, frames) float16; exactly ``extract_batch([wave])[0]``."""
        out = self.extract_batch([wave])[0]
        if isinstance(out, NoSpeechError):
            raise out
        return out

    def extract_batch(self, waves: Sequence[torch.Tensor]) -> list[np.ndarray | NoSpeechError]:
        """``extract`` of each (T,) wave, in order, computed in batches; a `NoSpeechError` for an unusable one."""
        speech: list[torch.Tensor | NoSpeechError] = []
        for wave in waves:
            try:
                speech.append(self.speech_only(ex.checked_wave(wave).cpu()))
            except NoSpeechError as err:
                speech.append(err)
        usable = [s for s in speech if isinstance(s, torch.Tensor)]
        feats = iter(self.features_batch(usable))
        return [s if isinstance(s, NoSpeechError) else next(feats).numpy().astype(np.float16) for s in speech]

    def features_batch(self, speeches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``features`` of each (T_i,) trimmed wave -> (rows, frames_i) float32 on the CPU, in batches."""
        info = self._info()
        pieces: list[tuple[int, torch.Tensor]] = []  # (which speech, (n,) samples), in time order per speech
        for i, speech in enumerate(speeches):
            speech = speech.detach().float().cpu()
            pieces += [(i, speech[a:b]) for a, b in split_pieces(len(speech), info.max_piece)]
        lengths = [info.window if info.whisper else len(p) for _, p in pieces]  # padded cost of each piece
        budget = round(self.batch_seconds * info.sample_rate)
        out: list[torch.Tensor | None] = [None] * len(pieces)
        with torch.no_grad():  # not inference_mode: callers may feed the tensors to autograd
            for batch in plan_batches(lengths, budget, equal_only=info.group_norm and not info.whisper):
                for k, feats in zip(batch, self._forward([pieces[k][1] for k in batch])):
                    out[k] = feats
        per_speech: list[list[torch.Tensor]] = [[] for _ in speeches]
        for (i, _), feats in zip(pieces, out):
            per_speech[i].append(feats)
        return [torch.cat(parts, dim=1) for parts in per_speech]  # (rows, sum of the pieces' frames)

    def _forward(self, pieces: list[torch.Tensor]) -> list[torch.Tensor]:
        """One forward pass over (n_i,) pieces -> (rows, frames_i) float32 on the CPU per piece."""
        info, model, device = self._info(), self.module(), self.device
        pre = self._preprocessor(info.folder)
        if info.whisper:
            mels = [pre(p.numpy(), sampling_rate=info.sample_rate, return_tensors="pt",
                        device=str(device))["input_features"] for p in pieces]  # (1, n_mels, 2 * max_frames) each
            inputs = {"input_features": torch.cat(mels).to(device)}
            frames = [min(-(-(len(p) // info.hop_length + 1) // 2), info.max_frames) for p in pieces]
        else:
            values = [torch.from_numpy(pre(p.numpy(), sampling_rate=info.sample_rate, return_tensors="np")
                                       ["input_values"][0]) for p in pieces]  # (n_i,) normalised per piece
            longest = max(len(v) for v in values)
            batch = torch.full((len(values), longest), float(getattr(pre, "padding_value", 0.0)))  # (B, T)
            mask = torch.zeros(len(values), longest, dtype=torch.long)  # (B, T) 1 on real samples
            for b, v in enumerate(values):
                batch[b, :len(v)], mask[b, :len(v)] = v, 1
            inputs = {"input_values": batch.to(device)}
            if any(len(v) < longest for v in values):  # padded: the model must know what is real
                inputs["attention_mask"] = mask.to(device)
            frames = [conv_frames(len(v), info.conv) for v in values]
        if self.dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise FeatureModelError(f"PretrainedFeatures.dtype bfloat16: {device} does not support bfloat16")
        with warnings.catch_warnings(), torch.autocast(device.type, torch.bfloat16, self.dtype == "bfloat16"):
            warnings.filterwarnings("ignore", "Support for mismatched key_padding_mask")  # WavLM, padded
            hidden = model(**inputs, output_hidden_states=True).hidden_states  # num_layers + 1 of (B, F, D)
        out = []
        for b, n in enumerate(frames):
            per_layer = [hidden[layer][b, :n].float() for layer in info.layers]  # (n, D) each
            feats = torch.stack(per_layer).mean(0) if self.layer_mode == "mean" else torch.cat(per_layer, dim=1)
            out.append(feats.T.cpu())  # (D, n) or (len(layers) * D, n), layer after layer
        return out
