"""Read one audio file as a mono float32 waveform at the feature sample rate.

Decoding uses soundfile (libsndfile ships in its wheel); `torchaudio.load` needs TorchCodec and FFmpeg
in recent torchaudio. Channels are averaged. Resampling uses torchaudio's "kaiser_best" settings: its
default (Hann, width 6) loses 1.8 dB at 7 kHz and aliases 8.5 kHz at only -11 dB going 44.1 -> 16 kHz;
these are flat (< 0.01 dB) to 7 kHz and reject the alias band by ~118 dB, at a similar speed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from ser_mtl.data.manifest import CorpusError

# torchaudio's documented "kaiser_best" resampling settings.
_RESAMPLE = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596,
             "resampling_method": "sinc_interp_kaiser", "beta": 14.769656459379492}


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> torch.Tensor:
    """The file's samples as a (T,) float32 mono tensor at `sample_rate` Hz, values in [-1, 1];
    CorpusError ("<path>: ...") when it is missing, not decodable, empty or non-finite."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    try:
        data, file_rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)  # (T, C)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        reason = str(exc).strip() or type(exc).__name__
        raise CorpusError(f"{path}: cannot read audio, expected a WAV/FLAC file libsndfile can "
                          f"decode ({reason})") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise CorpusError(f"{path}: empty audio (0 samples)")
    return mono_at_rate(data, int(file_rate), sample_rate, path)


def mono_at_rate(data: np.ndarray, file_rate: int, sample_rate: int, path) -> torch.Tensor:
    """(T, C) float32 samples -> (T',) mono at ``sample_rate``; CorpusError on non-finite samples."""
    if not np.isfinite(data).all():
        raise CorpusError(f"{path}: audio contains NaN or infinite samples")
    wave = torch.from_numpy(data.mean(axis=1, dtype=np.float32))  # (T,) mono mix
    if file_rate != sample_rate:
        wave = AF.resample(wave, file_rate, int(sample_rate), **_RESAMPLE)  # (T * sample_rate / file_rate,)
    return wave.contiguous()


def audio_chunks(path: str | os.PathLike, sample_rate: int = 16000,
                 chunk_seconds: float = 600.0) -> Iterator[torch.Tensor]:
    """The file as (T_k,) mono chunks of at most ``chunk_seconds``: a short file is `load_audio`'s wave;
    chunks are resampled on their own (a few samples at each boundary differ). Errors as `load_audio`."""
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    try:
        info = sf.info(os.fspath(path))
    except (RuntimeError, OSError, ValueError, TypeError):
        info = None  # load_audio names the problem
    if info is None or info.frames <= chunk_seconds * info.samplerate:
        yield load_audio(path, sample_rate)
        return
    block = int(chunk_seconds * info.samplerate)
    with sf.SoundFile(os.fspath(path)) as handle:
        while True:
            data = handle.read(block, dtype="float32", always_2d=True)  # (<= block, C)
            if data.shape[0] == 0:
                return
            yield mono_at_rate(data, int(info.samplerate), sample_rate, path)
