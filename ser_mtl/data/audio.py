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
    if not np.isfinite(data).all():
        raise CorpusError(f"{path}: audio contains NaN or infinite samples")
    wave = torch.from_numpy(data.mean(axis=1, dtype=np.float32))  # (T,) mono mix
    if file_rate != sample_rate:
        wave = AF.resample(wave, int(file_rate), int(sample_rate), **_RESAMPLE)  # (T * sample_rate / file_rate,)
    return wave.contiguous()
