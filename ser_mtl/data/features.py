"""Log spectrograms with 128 rows over 0-8 kHz, as in the paper's section 4.2.

The paper: silence removed, STFT with a 25 ms Hamming window and a 10 ms shift, 128 rows for 0-8 kHz.
At 16 kHz a 25 ms window has a 201-bin FFT, and 128 mel bands over 201 bins leave some filters empty.
Decisions (fields of `FeatureConfig`):

- **Window**: 400-sample periodic Hamming, zero-padded to `n_fft = 1024` (513 bins): same 25 ms time
  resolution, finer spectrum sampling, so every one of the 128 bands gets bins.
- **Rows**: `scale="mel"` gives HTK-mel triangles with unit peak and no area normalisation (low, narrow
  bands are not inflated); `scale="linear"` averages the power bins into 128 equal 62.5 Hz rows.
- **Log**: natural log of (band power + 1e-6): digital silence sits at -13.8 instead of -inf.
- **Frames**: `center=True`, zero-padded (works for waves shorter than n_fft/2): 1 + T // hop frames.
- **Silence removal** (default): as `librosa.effects.split`, 64 ms RMS frames every 16 ms more than
  40 dB below the loudest are dropped, pauses inside the utterance included. Runs in torch.
Features are float32 (float16 in the store) and NOT normalised here (`store.running_stats`).
"""

import dataclasses
import functools
import hashlib
import json
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT

_AMIN = 1e-10  # librosa's floor on power before dB, so an all-zero wave counts as non-silent


@dataclass(frozen=True)
class FeatureConfig:
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
            raise ValueError(f"FeatureConfig.scale: expected 'mel' or 'linear', got {self.scale!r}")
        if self.sample_rate <= 0 or self.n_bins <= 0 or self.log_eps <= 0 or self.silence_db <= 0:
            raise ValueError(f"FeatureConfig: sample_rate, n_bins, log_eps and silence_db must be > 0: {self}")
        if not 0 < self.hop_length <= self.win_length <= self.n_fft:
            raise ValueError(f"FeatureConfig: expected 0 < hop ({self.hop_length} samples) <= window "
                             f"({self.win_length} samples) <= n_fft ({self.n_fft})")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"FeatureConfig: expected 0 <= fmin < fmax <= sample_rate/2, "
                             f"got fmin={self.fmin}, fmax={self.fmax}, sample_rate={self.sample_rate}")
        if not 0 < self.silence_hop_samples <= self.silence_frame_samples:
            raise ValueError("FeatureConfig: expected 0 < silence_hop_ms <= silence_frame_ms")

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

    def key(self) -> str:
        """A 12-hex-digit hash of all fields; equal configs give equal keys in every process."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _linear_pooling(cfg: FeatureConfig) -> torch.Tensor:
    """(n_freqs, n_bins) weights averaging the FFT bins inside each equal-width row."""
    freqs = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64) * cfg.sample_rate / cfg.n_fft
    width = (cfg.fmax - cfg.fmin) / cfg.n_bins
    row = torch.floor((freqs - cfg.fmin) / width).long().clamp(max=cfg.n_bins - 1)  # fmax joins the last row
    inside = (freqs >= cfg.fmin) & (freqs <= cfg.fmax)
    weights = torch.zeros(len(freqs), cfg.n_bins, dtype=torch.float64)
    weights[inside.nonzero().squeeze(1), row[inside]] = 1.0
    counts = weights.sum(0)
    if (counts == 0).any():
        raise ValueError(f"FeatureConfig: linear rows of {width:.1f} Hz are narrower than the FFT bin "
                         f"spacing ({cfg.sample_rate / cfg.n_fft:.1f} Hz); raise n_fft or lower n_bins")
    return (weights / counts).float()


def _mel_filters(cfg: FeatureConfig) -> torch.Tensor:
    """(n_freqs, n_bins) HTK-mel triangles with unit peak; error if any band gets no FFT bin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # replaced by the clearer error below
        fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.fmin, cfg.fmax, cfg.n_bins, cfg.sample_rate,
                                norm=None, mel_scale="htk")
    if (fb.max(dim=0).values == 0).any():
        raise ValueError(f"FeatureConfig: with n_fft={cfg.n_fft}, some of the {cfg.n_bins} mel bands "
                         f"contain no FFT bin; raise n_fft (e.g. 1024) or use scale='linear'")
    return fb


def row_frequencies(cfg: FeatureConfig) -> np.ndarray:
    """(n_bins,) centre frequency in Hz of each output row (mel: triangle peak; linear: mean bin)."""
    if cfg.scale == "mel":
        mel = 2595.0 * np.log10(1.0 + np.array([cfg.fmin, cfg.fmax]) / 700.0)
        points = np.linspace(mel[0], mel[1], cfg.n_bins + 2)
        return (700.0 * (10.0 ** (points / 2595.0) - 1.0))[1:-1]
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    return freqs @ _linear_pooling(cfg).double().numpy()


@functools.lru_cache(maxsize=32)
def _transforms(cfg: FeatureConfig, device: torch.device) -> tuple[AT.Spectrogram, torch.Tensor]:
    # Built once per (config, device): the window and the filterbank live on the wave's device.
    spec = AT.Spectrogram(n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
                          window_fn=torch.hamming_window, power=2.0, center=True, pad_mode="constant")
    fb = _mel_filters(cfg) if cfg.scale == "mel" else _linear_pooling(cfg)  # (n_freqs, n_bins)
    return spec.to(device), fb.to(device)


def _frame_power(wave: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """(1 + T // hop,) mean square (RMS^2) of centred, zero-padded frames of ``wave`` (T,), as librosa's RMS."""
    padded = torch.nn.functional.pad(wave[None, None], (frame_length // 2, frame_length // 2))[0, 0]
    return padded.unfold(0, frame_length, hop_length).pow(2).mean(dim=1)


def _nonsilent_samples(power: torch.Tensor, top_db: float, hop_length: int, n_samples: int) -> torch.Tensor:
    """(T,) bool: frames within ``top_db`` of the loudest, frame f covering [f * hop, (f + 1) * hop)."""
    power = power.clamp_min(_AMIN)
    keep = 10.0 * torch.log10(power / power.max()) > -top_db  # (n_frames,)
    return keep[torch.arange(n_samples, device=power.device) // hop_length]  # (T,)


def nonsilent_mask(wave: torch.Tensor, top_db: float, frame_length: int, hop_length: int) -> torch.Tensor:
    """(T,) bool: True for samples inside the non-silent intervals of `librosa.effects.split`."""
    if wave.ndim != 1:
        raise ValueError(f"expected a (T,) waveform, got shape {tuple(wave.shape)}")
    return _nonsilent_samples(_frame_power(wave, frame_length, hop_length), top_db, hop_length, wave.shape[0])


def trim_silence(wave: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """The (T',) samples of `wave` outside silent stretches, concatenated (T' <= T, T' > 0)."""
    return wave[nonsilent_mask(wave, cfg.silence_db, cfg.silence_frame_samples, cfg.silence_hop_samples)]


def _checked_wave(wave: torch.Tensor) -> torch.Tensor:
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"compute_features: expected a non-empty (T,) waveform, got shape {tuple(wave.shape)}")
    if not wave.is_floating_point():
        raise ValueError(f"compute_features: expected a floating-point waveform, got {wave.dtype}")
    return wave.float()


def _log_rows(wave: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """(T,) -> (n_bins, 1 + T // hop_length) log band power; no silence removal here."""
    spec, fb = _transforms(cfg, wave.device)
    return torch.log(fb.T @ spec(wave) + cfg.log_eps)  # (n_bins, n_freqs) @ (n_freqs, frames)


def compute_features(wave: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """(T,) wave at cfg.sample_rate -> (n_bins, 1 + T' // hop_length) float32, T' after silence removal."""
    wave = _checked_wave(wave)
    if cfg.trim_silence:
        wave = trim_silence(wave, cfg)  # (T',)
    return _log_rows(wave, cfg)


SILENCE_FLOOR_DBFS = -90.0  # below 16-bit quantisation noise: nothing in the file was ever sound


class NoSpeechError(ValueError):
    """Audio with nothing to featurise: digital silence, or less speech than one analysis window."""


def speech_only(wave: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``wave`` after silence removal (``cfg.trim_silence``), from one pass over its frame powers;
    NoSpeechError when the loudest frame is below `SILENCE_FLOOR_DBFS` (the relative ``silence_db`` rule
    alone keeps all of an all-zero file) or less than one ``win_ms`` window is left."""
    wave = _checked_wave(wave)
    frame, hop = cfg.silence_frame_samples, cfg.silence_hop_samples
    power = _frame_power(wave, frame, hop)  # (n_frames,)
    level = 10.0 * np.log10(max(float(power.max()), 1e-30))  # dB relative to full scale (|x| = 1)
    if level < SILENCE_FLOOR_DBFS:
        raise NoSpeechError(f"no frame above the silence threshold (loudest {frame}-sample frame at "
                            f"{level:.0f} dBFS, floor {SILENCE_FLOOR_DBFS:.0f} dBFS): digital silence")
    if cfg.trim_silence:
        wave = wave[_nonsilent_samples(power, cfg.silence_db, hop, wave.shape[0])]  # (T',)
    if len(wave) < cfg.win_length:
        raise NoSpeechError(f"{len(wave)} samples of speech after silence removal, fewer than one "
                            f"{cfg.win_ms:g} ms analysis window ({cfg.win_length} samples)")
    return wave


def stored_frames(wave: torch.Tensor, cfg: FeatureConfig) -> np.ndarray:
    """`compute_features` as the store keeps it: (n_bins, frames) float16 on the CPU, or NoSpeechError."""
    return _log_rows(speech_only(wave, cfg), cfg).cpu().numpy().astype(np.float16)
