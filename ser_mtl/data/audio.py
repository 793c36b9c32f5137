"""Read one audio file as a mono float32 waveform at the feature sample rate.

Decoding goes through soundfile (libsndfile ships in its wheel and reads WAV and FLAC);
`torchaudio.load` is avoided because recent torchaudio needs TorchCodec and FFmpeg for it.
Stereo (or more) channels are averaged to mono; any other sample rate is converted with
`torchaudio.functional.resample` using a Kaiser-windowed sinc of width 64 (torchaudio's
"kaiser_best" settings, as in resampy/librosa). Its default (Hann, width 6) loses 1.8 dB at 7 kHz
and lets 8.5 kHz alias into the band at only -11 dB when going 44.1 -> 16 kHz; these settings are
flat (< 0.01 dB) to 7 kHz and reject the alias band by ~118 dB, at a similar speed. An audio file that
cannot be used raises `CorpusError` naming the file, so the feature store can record it as a
skip instead of crashing deep inside a decoder.
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
    """The file's samples as a (T,) float32 mono tensor at `sample_rate` Hz, values in [-1, 1].

    Raises CorpusError ("<path>: ...") when the file is missing, not decodable by libsndfile,
    has no samples, or holds non-finite values.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    try:
        # always_2d gives (T, C) for mono and multi-channel alike.
        data, file_rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
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
    """The file as consecutive (T_k,) mono chunks at ``sample_rate``, each at most ``chunk_seconds`` long.

    A file no longer than ``chunk_seconds`` is one chunk, exactly `load_audio`'s wave. A longer one is
    read ``chunk_seconds`` at a time, so memory stays bounded by the chunk, not the file; each chunk is
    resampled on its own (a few samples at each boundary differ from resampling the whole file).
    Errors as `load_audio`.
    """
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
