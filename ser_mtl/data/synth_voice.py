"""Speech-like signals for the synthetic demo corpora (see `ser_mtl.data.synth`).

The demo must exercise silence trimming, 128-bin spectrograms and the speaker, gender and emotion heads,
so an utterance is built like speech, not like a test tone: a band-limited glottal source (harmonics
falling as exp(-f / tilt), in closed form) with aspiration noise and fricative bursts; 3-5 formant
resonators per syllable from a vowel table scaled by the speaker's vocal-tract length (speakers differ
in timbre, not only pitch); words of syllables separated by pauses, silence at both ends. Emotion lives
only in prosody and voice quality (`prosody_for`), every cue jittered, a random overall gain on top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy.signal import sosfilt

from ser_mtl.io_utils import atomic_path

SAMPLE_RATE = 16000

# Adult male vowel formants F1-F3 (Peterson & Barney 1952) with typical F4/F5; a speaker's vocal-tract
# length scales the whole row.  (10 vowels, 5 formants) Hz
_VOWELS = np.array([
    [270, 2290, 3010, 3500, 4500],  # i
    [390, 1990, 2550, 3500, 4500],  # I
    [530, 1840, 2480, 3450, 4450],  # E
    [660, 1720, 2410, 3400, 4400],  # ae
    [730, 1090, 2440, 3350, 4350],  # a
    [570, 840, 2410, 3350, 4350],  # o (open)
    [440, 1020, 2240, 3300, 4300],  # U
    [300, 870, 2240, 3300, 4300],  # u
    [640, 1190, 2390, 3400, 4400],  # V
    [490, 1350, 1690, 3300, 4300],  # 3r
], dtype=np.float64)
_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0, 260.0])  # Hz, per formant
_REFERENCE_DB = -26.0  # RMS of the speech parts of a neutral utterance, dBFS
_NOISE_FLOOR_DB = -52.0  # background noise relative to the speech RMS: well below a 40 dB trim


@dataclass(frozen=True)
class Voice:
    """One speaker's fixed vocal characteristics."""

    gender: str  # "F" | "M"
    f0: float  # Hz, median pitch of neutral speech
    formant_scale: float  # vocal-tract length factor applied to the vowel table
    n_formants: int  # 3..5 resonators
    bandwidth_scale: float
    tilt_scale: float  # habitual brightness of the source
    breath_scale: float  # habitual breathiness
    level_db: float  # habitual loudness offset


@dataclass(frozen=True)
class Prosody:
    """How one utterance is spoken, relative to the speaker's voice."""

    pitch_st: float  # mean pitch offset from Voice.f0, semitones
    range_st: float  # size of the pitch accents, semitones
    rate: float  # syllables per second while speaking
    gain_db: float  # loudness offset, including the random overall gain
    tilt_hz: float  # source harmonics fall as exp(-f / tilt_hz): higher = tenser, brighter
    breath: float  # aspiration noise relative to the harmonic source
    pause_s: float  # mean pause between words
    formant_shift: float  # multiplies the formants (smiling raises them)


@dataclass(frozen=True)
class Utterance:
    """A generated utterance and what went into it (for transcripts and for tests)."""

    wave: np.ndarray  # (T,) float32 in [-1, 1]
    syllables_per_word: tuple[int, ...]
    speech_seconds: float  # from the first syllable onset to the last syllable offset
    f0_median: float  # Hz, median of the generated f0 contour over the syllables


def make_voice(rng: np.random.Generator, gender: str) -> Voice:
    """Draw a speaker: female f0 170-260 Hz and shorter vocal tract, male f0 85-150 Hz."""
    if gender == "F":
        f0, scale = rng.uniform(170.0, 260.0), rng.uniform(1.10, 1.22)
    elif gender == "M":
        f0, scale = rng.uniform(85.0, 150.0), rng.uniform(0.92, 1.04)
    else:
        raise ValueError(f"gender must be 'F' or 'M', got {gender!r}")
    return Voice(gender, f0=float(f0), formant_scale=float(scale), n_formants=int(rng.integers(3, 6)),
                 bandwidth_scale=float(rng.uniform(0.8, 1.3)), tilt_scale=float(rng.uniform(0.85, 1.2)),
                 breath_scale=float(rng.uniform(0.6, 1.5)), level_db=float(rng.normal(0.0, 1.5)))


def prosody_for(rng: np.random.Generator, activation: float, valence: float,
                random_gain_db: float = 6.0) -> Prosody:
    """Prosody from latent activation and valence (1-5): activation raises pitch, range, rate, loudness and
    brightness; valence raises pitch a little and the formants (smiling) and lowers tension. A uniform gain
    in [-random_gain_db, +random_gain_db] keeps raw energy from being a clean cue."""
    a, v = activation - 3.0, valence - 3.0
    return Prosody(
        pitch_st=float(3.0 * a + 0.8 * v + rng.normal(0.0, 0.9)),
        range_st=float(np.clip(2.5 + 1.6 * a + 0.9 * v + rng.normal(0.0, 0.7), 0.5, 9.0)),
        rate=float(np.clip(4.2 + 1.1 * a + 0.2 * v + rng.normal(0.0, 0.35), 2.0, 7.0)),
        gain_db=float(4.0 * a - 1.0 * v + rng.normal(0.0, 1.5) + rng.uniform(-random_gain_db, random_gain_db)),
        tilt_hz=float(900.0 * 2.0 ** (0.55 * a - 0.35 * v + rng.normal(0.0, 0.25))),
        breath=float(np.clip(0.06 - 0.05 * a + rng.normal(0.0, 0.02), 0.0, 0.3)),
        pause_s=float(np.clip(0.22 - 0.06 * a + rng.normal(0.0, 0.04), 0.06, 0.6)),
        formant_shift=float(1.0 + 0.03 * v + rng.normal(0.0, 0.01)),
    )


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centered moving average in O(len(x)) via a cumulative sum (np.convolve would be O(n * width))."""
    width = max(1, int(width))
    c = np.cumsum(np.pad(x, (width // 2 + 1, width - width // 2 - 1), mode="edge"))
    return (c[width:] - c[:-width]) / width


def _resonator_sos(freqs: np.ndarray, bandwidths: np.ndarray, sample_rate: int) -> np.ndarray:
    """Klatt two-pole resonators with unit gain at 0 Hz, one second-order section each.  (K, 6)"""
    r = np.exp(-np.pi * bandwidths / sample_rate)
    b = 2.0 * r * np.cos(2.0 * np.pi * freqs / sample_rate)
    c = -(r**2)
    zero = np.zeros_like(b)
    return np.stack([1.0 - b - c, zero, zero, np.ones_like(b), -b, -c], axis=1)  # columns b0 b1 b2 a0 a1 a2


def _plan_syllables(rng: np.random.Generator, n: int, sample_rate: int,
                    prosody: Prosody) -> tuple[list[tuple[int, int]], list[int]]:
    """Place words of 1-3 syllables between leading and trailing silence; returns sample spans."""
    t, end = rng.uniform(0.08, 0.3), n / sample_rate - rng.uniform(0.08, 0.3)
    spans: list[tuple[int, int]] = []
    words: list[int] = []
    while True:
        k = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        durs = rng.uniform(0.7, 1.3, size=k) / prosody.rate
        if t + durs.sum() > end:  # fill the rest with one syllable if it fits, else stop
            k, durs = 1, durs[:1]
            if t + durs[0] > end:
                if words:
                    break
                durs = np.array([max(end - t, 0.05)])  # utterance too short for a word: squeeze one in
        for d in durs:
            spans.append((int(t * sample_rate), min(int((t + d) * sample_rate), n)))
            t += d
        words.append(k)
        # Most words are followed by a real pause; some run on within a phrase.
        t += prosody.pause_s * rng.uniform(0.4, 1.6) if rng.random() < 0.8 else 0.04
    return spans, words


def synthesize(rng: np.random.Generator, voice: Voice, prosody: Prosody, seconds: float,
               sample_rate: int = SAMPLE_RATE) -> Utterance:
    """Generate `seconds` of speech-like audio (exact length) for `voice` speaking with `prosody`."""
    n = round(seconds * sample_rate)
    spans, words = _plan_syllables(rng, n, sample_rate, prosody)

    # Pitch: accent per syllable, smoothed, on a declining line, with a slow random drift.  (T,)
    accents, env = np.zeros(n), np.zeros(n)
    for s, e in spans:
        accents[s:e] = prosody.range_st * rng.uniform(0.0, 1.0)
        env[s:e] = rng.uniform(0.6, 1.0) * np.sin(np.pi * np.linspace(0.0, 1.0, e - s)) ** 0.8
    voiced = env > 0.05
    accents = _moving_average(accents, 0.08 * sample_rate)
    decline = (1.0 + 0.25 * prosody.range_st) * np.linspace(0.5, -0.5, n)
    drift = _moving_average(rng.standard_normal(n), 0.05 * sample_rate) * 0.3 * np.sqrt(0.05 * sample_rate)
    semitones = prosody.pitch_st + accents - accents[voiced].mean() + decline + drift
    f0 = voice.f0 * 2.0 ** (semitones / 12.0)  # (T,) Hz
    theta = 2.0 * np.pi * np.cumsum(f0) / sample_rate

    # Harmonic source sum_{k=1..K} r^k cos(k theta) in closed form; K keeps it below Nyquist.  (T,)
    r = np.exp(-f0 / (prosody.tilt_hz * voice.tilt_scale))
    k_max = np.floor((0.5 * sample_rate - 600.0) / f0)
    z = r * np.exp(1j * theta)
    source = np.real(z * (1.0 - r**k_max * np.exp(1j * k_max * theta)) / (1.0 - z)) * (1.0 - r)
    source -= source.mean()
    source /= np.sqrt(np.mean(source**2)) + 1e-12
    noise = rng.standard_normal(n)
    noise[1:] -= noise[:-1]  # aspiration is high-pass
    source += prosody.breath * voice.breath_scale * 4.0 * noise * (0.5 + 0.5 * np.cos(theta))

    out = np.zeros(n + int(0.05 * sample_rate))
    tail = int(0.03 * sample_rate)  # let the resonators ring out past the syllable
    nf = voice.n_formants
    for s, e in spans:
        formants = _VOWELS[rng.integers(len(_VOWELS)), :nf] * voice.formant_scale * prosody.formant_shift
        formants = np.minimum(formants * rng.uniform(0.95, 1.05, size=nf), 0.45 * sample_rate)
        bandwidths = _BANDWIDTHS[:nf] * voice.bandwidth_scale * (1.0 + 2.0 * prosody.breath)
        seg = np.concatenate([source[s:e] * env[s:e], np.zeros(tail)])
        y = sosfilt(_resonator_sos(formants, bandwidths, sample_rate), seg)
        out[s : s + len(y)] += y
        if rng.random() < 0.45 and s > 0:  # fricative-like onset burst
            m = min(int(rng.uniform(0.02, 0.05) * sample_rate), s)
            burst = np.diff(rng.standard_normal(m + 2), n=2) * np.linspace(0.2, 1.0, m)  # high-passed
            fc = np.array([rng.uniform(2500.0, 5500.0)])
            burst = sosfilt(_resonator_sos(fc, np.array([1500.0]), sample_rate), burst)
            out[s - m : s] += 0.12 * np.sqrt(np.mean(y**2)) * burst / (np.sqrt(np.mean(burst**2)) + 1e-12)
    out = out[:n]
    out[1:] -= 0.95 * out[:-1].copy()  # lip radiation: +6 dB/octave

    target = 10.0 ** ((_REFERENCE_DB + voice.level_db + prosody.gain_db) / 20.0)
    out *= target / (np.sqrt(np.mean(out[voiced] ** 2)) + 1e-12)
    out += rng.standard_normal(n) * target * 10.0 ** (_NOISE_FLOOR_DB / 20.0)
    peak = np.max(np.abs(out))
    if peak > 0.98:  # loud utterances are limited rather than clipped
        out *= 0.98 / peak
    return Utterance(wave=out.astype(np.float32), syllables_per_word=tuple(words),
                     speech_seconds=(spans[-1][1] - spans[0][0]) / sample_rate,
                     f0_median=float(np.median(f0[voiced])))


_WORDS = ("the", "of", "and", "to", "in", "he", "was", "that", "it", "his", "her", "you", "as", "had",
          "with", "for", "she", "not", "at", "but", "by", "be", "have", "from", "or", "one", "all", "they",
          "were", "which", "when", "we", "there", "can", "an", "your", "more", "would", "what", "about",
          "if", "out", "so", "said", "time", "could", "into", "them", "then", "now", "only", "little",
          "very", "well", "down", "say", "over", "know", "good", "back", "after", "first", "way", "where",
          "long", "our", "great", "before", "right", "old", "think", "here", "thing", "house", "ever")


def render_utterance(seed: int, key: tuple[int, ...], voice: Voice, latent: tuple[float, float, float],
                     seconds: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """Audio and words of one utterance of (valence, activation, dominance) ``latent``, from (seed, *key)."""
    rng = np.random.default_rng([seed, *key])
    valence, activation, _ = latent
    u = synthesize(rng, voice, prosody_for(rng, activation, valence), seconds)
    words = tuple(str(w) for w in rng.choice(_WORDS, size=len(u.syllables_per_word)))
    return u.wave, words


def write_audio(path: str | os.PathLike, wave: np.ndarray, fmt: str) -> None:
    """``wave`` as 16-bit PCM at SAMPLE_RATE in ``fmt`` ("WAV", "FLAC"), written atomically."""
    with atomic_path(path) as tmp:
        sf.write(tmp, wave, SAMPLE_RATE, subtype="PCM_16", format=fmt)
