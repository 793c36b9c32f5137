"""Log spectrograms with 128 rows over 0-8 kHz, as in the paper's section 4.2.

The paper: silence removed, STFT with a 25 ms Hamming window and a 10 ms shift, 128 rows for 0-8 kHz.
At 16 kHz a 25 ms window has a 201-bin FFT, and 128 mel bands over 201 bins leave some filters empty.
Decisions (fields of `LogSpectrogram`):

- **Window**: 400-sample periodic Hamming, zero-padded to `n_fft = 1024` (513 bins): same 25 ms time
  resolution, finer spectrum sampling, so every one of the 128 bands gets bins.
- **Rows**: `scale="mel"` gives HTK-mel triangles with unit peak and no area normalisation (low, narrow
  bands are not inflated); `scale="linear"` averages the power bins into 128 equal 62.5 Hz rows.
- **Log**: natural log of (band power + 1e-6): digital silence sits at -13.8 instead of -inf.
- **Frames**: `center=True`, zero-padded (works for waves shorter than n_fft/2): 1 + T // hop frames.
- **Silence removal** (default): as `librosa.effects.split`, 64 ms RMS frames every 16 ms more than
  40 dB below the loudest are dropped, pauses inside the utterance included. Runs in torch.
Features are float32 (float16 in the store) and NOT normalised here (`store.running_stats`).
`LogSpectrogram` is the default `FeatureExtractor` (``ser_mtl/data/extractor.py``); its ``key()`` is the
hash of its fields, as before extractors had a class path, so existing stores stay valid.
"""

import dataclasses
import functools
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT

from ser_mtl.data.extractor import FeatureExtractor, remove_silence, settings_key


@dataclass(frozen=True)
class LogSpectrogram(FeatureExtractor):
    """How one utterance becomes a (n_bins, frames) log spectrogram; see the module docstring.

    Attributes:
        sample_rate: Hz the audio is resampled to before analysis.
        win_ms: analysis window length in ms (Hamming); 25 ms = 400 samples at 16 kHz.
        hop_ms: frame shift in ms; 10 ms = 160 samples, i.e. 100 frames per second.
        n_fft: FFT size; the window is zero-padded to it (1024 -> 513 bins, no empty mel filter).
        n_bins: number of frequency rows of the output.
        fmin: lowest frequency (Hz) covered by the rows.
        fmax: highest frequency (Hz) covered by the rows, at most sample_rate / 2.
        scale: "mel" for HTK-mel triangular bands, "linear" for power averaged over equal-width rows.
        log_eps: added to the band power before the natural log.
        trim_silence: remove silent frames (paper 4.2) before the STFT.
        silence_db: a frame is silent when its RMS is more than this many dB below the loudest's (`top_db`).
        silence_frame_ms: frame length (ms) of the RMS used for silence detection.
        silence_hop_ms: hop (ms) of the RMS used for silence detection; the resolution of trimming.
    """

    sample_rate: int = 16000
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 1024
    n_bins: int = 128
    fmin: float = 0.0
    fmax: float = 8000.0
    scale: Literal["mel", "linear"] = "mel"
    log_eps: float = 1e-6
    trim_silence: bool = True
    silence_db: float = 40.0
    silence_frame_ms: float = 64.0
    silence_hop_ms: float = 16.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # 8000 and 8000.0 must give the same key()
            if f.type is float:
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        if self.scale not in ("mel", "linear"):
            raise ValueError(f"LogSpectrogram.scale: expected 'mel' or 'linear', got {self.scale!r}")
        if self.sample_rate <= 0 or self.n_bins <= 0 or self.log_eps <= 0 or self.silence_db <= 0:
            raise ValueError(f"LogSpectrogram: sample_rate, n_bins, log_eps and silence_db must be > 0: {self}")
        if not 0 < self.hop_length <= self.win_length <= self.n_fft:
            raise ValueError(f"LogSpectrogram: expected 0 < hop ({self.hop_length} samples) <= window "
                             f"({self.win_length} samples) <= n_fft ({self.n_fft})")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"LogSpectrogram: expected 0 <= fmin < fmax <= sample_rate/2, "
                             f"got fmin={self.fmin}, fmax={self.fmax}, sample_rate={self.sample_rate}")
        if not 0 < self.silence_hop_samples <= self.silence_frame_samples:
            raise ValueError("LogSpectrogram: expected 0 < silence_hop_ms <= silence_frame_ms")

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def silence_frame_samples(self) -> int:
        return round(self.sample_rate * self.silence_frame_ms / 1000)

    @property
    def silence_hop_samples(self) -> int:
        return round(self.sample_rate * self.silence_hop_ms / 1000)

    # -- the FeatureExtractor interface ---------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.n_bins

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def settings(self) -> dict:
        return dataclasses.asdict(self)

    def init_args(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A 12-hex-digit hash of all fields; equal configs give equal keys in every process."""
        return settings_key(self.settings())

    def speech_key(self) -> list:
        return [self.trim_silence, self.silence_db, self.silence_frame_ms, self.silence_hop_ms, self.win_ms]

    def speech_only(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave`` after silence removal (``trim_silence``); NoSpeechError for digital silence or when less
        than one ``win_ms`` window is left."""
        return remove_silence(wave, self.sample_rate, self.trim_silence, self.silence_db, self.silence_frame_ms,
                              self.silence_hop_ms, self.win_length, f"one {self.win_ms:g} ms analysis window")

    def features(self, speech: torch.Tensor) -> torch.Tensor:
        """(T,) -> (n_bins, 1 + T // hop_length) float32 log band power; no silence removal here."""
        spec, fb = _transforms(self, speech.device)
        return torch.log(fb.T @ spec(speech) + self.log_eps)  # (n_bins, n_freqs) @ (n_freqs, frames)


def _linear_pooling(cfg: LogSpectrogram) -> torch.Tensor:
    """(n_freqs, n_bins) weights averaging the FFT bins inside each equal-width row."""
    freqs = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64) * cfg.sample_rate / cfg.n_fft
    width = (cfg.fmax - cfg.fmin) / cfg.n_bins
    row = torch.floor((freqs - cfg.fmin) / width).long().clamp(max=cfg.n_bins - 1)  # fmax joins the last row
    inside = (freqs >= cfg.fmin) & (freqs <= cfg.fmax)
    weights = torch.zeros(len(freqs), cfg.n_bins, dtype=torch.float64)
    weights[inside.nonzero().squeeze(1), row[inside]] = 1.0
    counts = weights.sum(0)
    if (counts == 0).any():
        raise ValueError(f"LogSpectrogram: linear rows of {width:.1f} Hz are narrower than the FFT bin "
                         f"spacing ({cfg.sample_rate / cfg.n_fft:.1f} Hz); raise n_fft or lower n_bins")
    return (weights / counts).float()


def _mel_filters(cfg: LogSpectrogram) -> torch.Tensor:
    """(n_freqs, n_bins) HTK-mel triangles with unit peak; error if any band gets no FFT bin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # replaced by the clearer error below
        fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.fmin, cfg.fmax, cfg.n_bins, cfg.sample_rate,
                                norm=None, mel_scale="htk")
    if (fb.max(dim=0).values == 0).any():
        raise ValueError(f"LogSpectrogram: with n_fft={cfg.n_fft}, some of the {cfg.n_bins} mel bands "
                         f"contain no FFT bin; raise n_fft (e.g. 1024) or use scale='linear'")
    return fb


def row_frequencies(cfg: LogSpectrogram) -> np.ndarray:
    """(n_bins,) centre frequency in Hz of each output row (mel: triangle peak; linear: mean bin)."""
    if cfg.scale == "mel":
        mel = 2595.0 * np.log10(1.0 + np.array([cfg.fmin, cfg.fmax]) / 700.0)
        points = np.linspace(mel[0], mel[1], cfg.n_bins + 2)
        return (700.0 * (10.0 ** (points / 2595.0) - 1.0))[1:-1]
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    return freqs @ _linear_pooling(cfg).double().numpy()


@functools.lru_cache(maxsize=32)
def _transforms(cfg: LogSpectrogram, device: torch.device) -> tuple[AT.Spectrogram, torch.Tensor]:
    # Built once per (config, device): the window and the filterbank live on the wave's device.
    spec = AT.Spectrogram(n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
                          window_fn=torch.hamming_window, power=2.0, center=True, pad_mode="constant")
    fb = _mel_filters(cfg) if cfg.scale == "mel" else _linear_pooling(cfg)  # (n_freqs, n_bins)
    return spec.to(device), fb.to(device)
