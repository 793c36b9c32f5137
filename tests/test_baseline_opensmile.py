"""openSMILE functionals for the baseline: known values on synthetic tones, the trimmed samples, the cache."""

import sys

import numpy as np
import pytest
import soundfile as sf

from ser_mtl.baselines import opensmile_features as osf
from ser_mtl.baselines.opensmile_features import BaselineError, SmileCache, functionals, utterance_samples
from ser_mtl.data.audio import load_audio
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.data.manifest import ManifestRow

pytest.importorskip("opensmile")

SR = 16000
F0_MEAN = "F0semitoneFrom27.5Hz_sma3nz_amean"  # eGeMAPSv02's name (v01's "_sf0_" became "_sma3nz_")


def harmonic_tone(f0: float, seconds: float = 1.5, harmonics: int = 10) -> np.ndarray:
    """(T,) a voiced-like tone: harmonics k * f0 at amplitude 1 / k, peak 0.3."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, harmonics + 1))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("f0", [220.0, 150.0])
def test_egemaps_of_a_harmonic_tone(f0):
    smile = osf._smile("egemaps")
    values = functionals(smile, harmonic_tone(f0), SR)
    assert values.shape == (88,) and np.isfinite(values).all()
    names = list(smile.feature_names)
    # 12 semitones per octave above 27.5 Hz: 220 Hz -> 36.00, 150 Hz -> 29.37
    assert values[names.index(F0_MEAN)] == pytest.approx(12 * np.log2(f0 / 27.5), abs=0.1)
    # a steady pitch: its relative spread is ~0
    assert abs(values[names.index("F0semitoneFrom27.5Hz_sma3nz_stddevNorm")]) < 1e-3


def test_compare_has_6373_finite_functionals():
    values = functionals(osf._smile("compare"), harmonic_tone(220.0, 1.0), SR)
    assert values.shape == (6373,) and np.isfinite(values).all()


def test_trimmed_samples_are_the_stores_speech(tmp_path):
    """0.5 s of silence, 1 s of tone, 0.5 s of silence: ``trimmed`` drops the silences as the store does."""
    cfg = LogSpectrogram()
    wave = np.concatenate([np.zeros(SR // 2, np.float32), harmonic_tone(220.0, 1.0), np.zeros(SR // 2, np.float32)])
    path = tmp_path / "padded.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    raw, trimmed = utterance_samples(path, cfg, "raw"), utterance_samples(path, cfg, "trimmed")
    assert len(raw) == 2 * SR
    np.testing.assert_array_equal(trimmed, cfg.speech_only(load_audio(path, SR)).numpy())
    assert abs(len(trimmed) - SR) <= 2 * cfg.silence_frame_samples  # the tone, within the detector's resolution
    smile = osf._smile("egemaps")
    names = list(smile.feature_names)
    f0_trimmed = functionals(smile, trimmed, SR)[names.index(F0_MEAN)]
    assert f0_trimmed == pytest.approx(36.0, abs=0.1)
    # the silences count as unvoiced time only in the raw file: fewer voiced segments per second there
    per_sec = names.index("VoicedSegmentsPerSec")
    assert functionals(smile, raw, SR)[per_sec] < functionals(smile, trimmed, SR)[per_sec]


def _rows(tmp_path, n: int) -> list[ManifestRow]:
    rows = []
    for i in range(n):
        rel = f"wav/u{i}.wav"
        (tmp_path / "wav").mkdir(exist_ok=True)
        sf.write(tmp_path / rel, harmonic_tone(110.0 + 20 * i, 0.5), SR, subtype="PCM_16")
        rows.append(ManifestRow(f"u{i}", "csv", rel, 0.5, "s1", "F", "1", "neutral", "neu", None, None, None))
    return rows


def test_cache_resumes_a_killed_extraction(tmp_path, monkeypatch):
    rows = _rows(tmp_path, 6)
    calls = []
    real = osf.functionals

    def counting(*args, **kwargs):
        calls.append(args[-1])  # the audio path
        if len(calls) == 4 and kill[0]:
            raise KeyboardInterrupt("killed")  # as a kill: nothing after the third utterance is written
        return real(*args, **kwargs)

    kill = [True]
    monkeypatch.setattr(osf, "functionals", counting)
    cache = SmileCache("egemaps", LogSpectrogram(), tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        cache.features(rows, tmp_path, range(6))
    folder = cache.folder("csv")
    assert len(list(folder.glob("*.npy"))) == 3 and not list(folder.glob(".*.tmp"))
    kill[0] = False
    calls.clear()
    matrix, extracted = cache.features(rows, tmp_path, range(6))
    assert extracted == 3 and [c.endswith(f"u{i}.wav") for i, c in zip((3, 4, 5), calls)] == [True] * 3
    assert matrix.shape == (6, 88)
    # a fresh cache computes all six: the same numbers as the resumed one
    fresh, n_fresh = SmileCache("egemaps", LogSpectrogram(), tmp_path / "fresh").features(rows, tmp_path, range(6))
    assert n_fresh == 6
    np.testing.assert_array_equal(matrix, fresh)
    # complete: nothing is extracted again; a damaged file is extracted again, alone
    calls.clear()
    assert cache.features(rows, tmp_path, [5, 0])[1] == 0 and calls == []
    (folder / osf.utterance_file_name(rows[2])).write_bytes(b"\x93NUMPY truncated")
    again, extracted = cache.features(rows, tmp_path, range(6))
    assert extracted == 1 and calls[0].endswith("u2.wav")
    np.testing.assert_array_equal(again, fresh)
    assert cache.feature_names("csv")[0] == F0_MEAN and len(cache.feature_names("csv")) == 88


def test_cache_key_follows_the_samples(tmp_path):
    base = SmileCache("egemaps", LogSpectrogram(), tmp_path)
    assert base.folder("iemocap") == SmileCache("egemaps", LogSpectrogram(n_bins=64), tmp_path).folder("iemocap")
    assert base.folder("iemocap") != SmileCache("egemaps", LogSpectrogram(silence_db=30.0), tmp_path).folder("iemocap")
    assert base.folder("iemocap") != SmileCache("egemaps", LogSpectrogram(), tmp_path, "raw").folder("iemocap")
    assert base.folder("iemocap") != SmileCache("compare", LogSpectrogram(), tmp_path).folder("iemocap")
    with pytest.raises(BaselineError, match="--baseline.audio"):
        SmileCache("egemaps", LogSpectrogram(), tmp_path, "whole")


@pytest.mark.slow  # two spawned processes import torch: ~10 s
def test_parallel_extraction_matches_in_process(tmp_path):
    rows = _rows(tmp_path, 4)
    one, _ = SmileCache("egemaps", LogSpectrogram(), tmp_path / "a").features(rows, tmp_path, range(4))
    two, n = SmileCache("egemaps", LogSpectrogram(), tmp_path / "b").features(rows, tmp_path, range(4), num_workers=2)
    assert n == 4
    np.testing.assert_array_equal(one, two)


def test_missing_opensmile_is_one_line(monkeypatch, capsys):
    from ser_mtl.cli import main

    monkeypatch.setitem(sys.modules, "opensmile", None)  # `import opensmile` now raises ImportError
    with pytest.raises(BaselineError, match="pip install opensmile"):
        osf.import_opensmile()
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--config", "configs/demo.yaml", "--baseline.features", "egemaps"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and err.count("\n") == 0 and err.endswith("pip install opensmile")
