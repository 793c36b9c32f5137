"""Audio loading and spectrogram features (paper 4.2) on audio generated in tmp_path."""

import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from ser_mtl.data.audio import load_audio
from ser_mtl.data.extractor import NoSpeechError, frame_power, nonsilent_samples
from ser_mtl.data.features import LogSpectrogram, row_frequencies
from ser_mtl.data.manifest import CorpusError

SR = 16000


def compute_features(wave: torch.Tensor, cfg: LogSpectrogram) -> torch.Tensor:
    """The store's path (`FeatureExtractor.extract`) before its float16 rounding: silence removal, then rows."""
    return cfg.features(cfg.speech_only(wave))


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rich_signal(sr: int, seconds: float = 3.0) -> np.ndarray:
    """Tones + a 100 Hz-7 kHz chirp, amplitude-modulated: energy across the band, defined at any rate."""
    t = np.arange(round(seconds * sr)) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    x = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in
            [(0.3, 220, 0.0), (0.2, 1200, 1.0), (0.1, 2500, 2.0), (0.05, 5200, 0.5)])
    chirp = 0.05 * np.sin(2 * np.pi * (100 * t + (7000 - 100) / (2 * seconds) * t ** 2))
    return (env * x + chirp).astype(np.float32)


# -- load_audio ----------------------------------------------------------------------------
def test_load_audio_reads_16k_mono_pcm(tmp_path):
    x = tone(440, 0.5)
    sf.write(tmp_path / "a.wav", x, SR, subtype="PCM_16")
    wave = load_audio(tmp_path / "a.wav")
    assert wave.dtype == torch.float32 and wave.shape == (8000,)
    np.testing.assert_allclose(wave.numpy(), x, atol=1.0 / 32768)


def test_load_audio_mixes_stereo_to_mono(tmp_path):
    x = tone(440, 0.5)
    sf.write(tmp_path / "s.wav", np.stack([x, -0.5 * x], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav").numpy(), 0.25 * x, atol=1e-7)


def test_load_audio_resamples_to_target_rate(tmp_path):
    sf.write(tmp_path / "r.flac", rich_signal(44100, 2.0), 44100)
    wave = load_audio(tmp_path / "r.flac")
    assert wave.shape == (32000,)  # 2 s at 16 kHz
    inner = slice(200, -200)  # the resampler's edges see the signal's hard start/end
    np.testing.assert_allclose(wave.numpy()[inner], rich_signal(SR, 2.0)[inner], atol=2e-2)


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00garbage" * 10])
def test_load_audio_unreadable_names_the_file(tmp_path, content):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(content)
    with pytest.raises(CorpusError, match="broken.wav: cannot read audio"):
        load_audio(bad)
    with pytest.raises(CorpusError, match="missing.wav: cannot read audio"):
        load_audio(tmp_path / "missing.wav")


def test_load_audio_zero_samples_is_an_error(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(CorpusError, match=r"empty.wav: empty audio \(0 samples\)"):
        load_audio(tmp_path / "empty.wav")


# -- LogSpectrogram ---------------------------------------------------------------------------
def test_config_key_is_stable_and_changes_with_any_field():
    assert LogSpectrogram().key() == LogSpectrogram().key() == LogSpectrogram(fmax=8000).key()
    assert len(LogSpectrogram().key()) == 12
    keys = {LogSpectrogram().key(), LogSpectrogram(scale="linear").key(), LogSpectrogram(trim_silence=False).key(),
            LogSpectrogram(silence_db=30.0).key(), LogSpectrogram(n_fft=2048).key()}
    assert len(keys) == 5
    cfg = LogSpectrogram()
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft) == (400, 160, 1024)


def test_default_mel_bank_has_no_empty_filter_but_n_fft_400_is_refused():
    x = torch.from_numpy(tone(1000, 0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchaudio's "all zero values" warning would fail here
        assert compute_features(x, LogSpectrogram()).shape == (128, 1 + 3200 // 160)
    with pytest.raises(ValueError, match="mel bands contain no FFT bin"):
        compute_features(x, LogSpectrogram(n_fft=400))
    with pytest.raises(ValueError, match="scale"):
        LogSpectrogram(scale="bark")


# -- the rows the store keeps ------------------------------------------------------------------------
def test_row_centres_match_librosa():
    mel = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=8000.0, htk=True)[1:-1]
    np.testing.assert_allclose(row_frequencies(LogSpectrogram()), mel, rtol=1e-9)
    linear = row_frequencies(LogSpectrogram(scale="linear"))
    # 513 bins 15.625 Hz apart, 4 per 62.5 Hz row (the last row also takes the 8 kHz bin).
    np.testing.assert_allclose(linear[:3], [23.4375, 85.9375, 148.4375])
    assert linear[-1] == pytest.approx(np.mean([7937.5, 7953.125, 7968.75, 7984.375, 8000.0]))


@pytest.mark.parametrize("scale", ["mel", "linear"])
def test_1khz_tone_peaks_in_the_row_nearest_1khz(scale):
    cfg = LogSpectrogram(scale=scale)
    if scale == "mel":
        centres = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=8000.0, htk=True)[1:-1]
    else:  # 513 FFT bins, 4 to a 62.5 Hz row, the 8 kHz bin in the last row
        bins = np.arange(513) * 15.625
        row = np.minimum(np.arange(513) // 4, 127)
        centres = np.bincount(row, weights=bins) / np.bincount(row)
    expected = int(np.argmin(np.abs(centres - 1000.0)))
    assert expected == (44 if scale == "mel" else 16)
    feats = compute_features(torch.from_numpy(tone(1000, 1.0)), cfg)  # (128, 101)
    assert int(feats.mean(dim=1).argmax()) == expected
    # and it is a peak, not a plateau: > 20 dB (ln 100 = 4.6) above rows a quarter-octave away
    far = np.argmin(np.abs(centres - 1200.0))
    assert float(feats[expected].mean() - feats[far].mean()) > 4.6


@pytest.mark.parametrize("trim", [True, False])
def test_three_seconds_give_about_300_frames(trim):
    feats = compute_features(torch.from_numpy(rich_signal(SR, 3.0)), LogSpectrogram(trim_silence=trim))
    assert feats.dtype == torch.float32
    assert feats.shape == (128, 1 + 48000 // 160)  # 301: centred frames, one every 10 ms
    assert torch.isfinite(feats).all()


def test_log_floor_is_log_eps_for_digital_silence():
    feats = LogSpectrogram().features(torch.zeros(1600))  # the rows alone: the store refuses such audio
    assert feats.shape == (128, 11)
    torch.testing.assert_close(feats, torch.full_like(feats, float(np.log(1e-6))))
    with pytest.raises(NoSpeechError, match="digital silence"):
        LogSpectrogram().extract(torch.zeros(1600))


def test_44k_stereo_gives_the_features_of_16k_mono(tmp_path):
    x44 = rich_signal(44100)
    sf.write(tmp_path / "stereo44.wav", np.stack([1.2 * x44, 0.8 * x44], axis=1), 44100, subtype="FLOAT")
    sf.write(tmp_path / "mono16.wav", rich_signal(SR), SR, subtype="FLOAT")
    cfg = LogSpectrogram()
    a = compute_features(load_audio(tmp_path / "stereo44.wav"), cfg)
    b = compute_features(load_audio(tmp_path / "mono16.wav"), cfg)
    assert a.shape == b.shape == (128, 301)
    a, b = a[:, 2:-2], b[:, 2:-2]  # edge frames see the resampler's start-up
    diff = (a - b).abs()
    loud = b > b.max() - np.log(1e4)  # within 40 dB of the loudest cell: the signal, not leakage
    # log-power differences (0.01 = 0.04 dB); one channel taken alone (x1.2) would be off by 0.36,
    # torchaudio's default resampler by 0.4 at 7 kHz
    assert float(diff[loud].max()) < 1e-3
    assert float(diff.max()) < 1e-2


def test_silence_trimming_matches_librosa_split():
    rng = np.random.default_rng(0)
    x = np.concatenate([tone(440, 1.0), np.zeros(SR, np.float32), tone(660, 1.0)])
    x += 1e-4 * rng.standard_normal(len(x)).astype(np.float32)  # -77 dB floor, not digital zero
    cfg = LogSpectrogram()
    frame, hop = cfg.silence_frame_samples, cfg.silence_hop_samples
    intervals = librosa.effects.split(x, top_db=cfg.silence_db, frame_length=frame, hop_length=hop)
    assert len(intervals) == 2
    ref = np.zeros(len(x), bool)
    for start, end in intervals:
        ref[start:end] = True
    wave = torch.from_numpy(x)
    mask = nonsilent_samples(frame_power(wave, frame, hop), cfg.silence_db, hop, len(x)).numpy()
    assert np.count_nonzero(mask != ref) <= 2 * hop  # within a couple of 16 ms detection frames
    kept = len(cfg.speech_only(wave))
    assert kept == mask.sum() and abs(kept - ref.sum()) <= 2 * hop
    with_trim = compute_features(torch.from_numpy(x), cfg).shape[1]
    without = compute_features(torch.from_numpy(x), LogSpectrogram(trim_silence=False)).shape[1]
    assert without == 301
    assert with_trim == 1 + kept // 160
    assert 90 <= without - with_trim <= 101  # the 1 s gap, less the detector's margin at its edges


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_features_match_cpu():
    x = torch.from_numpy(rich_signal(SR, 2.0))
    cpu = compute_features(x, LogSpectrogram())
    gpu = compute_features(x.cuda(), LogSpectrogram())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-4)
