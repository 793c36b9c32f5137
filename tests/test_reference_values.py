"""Numbers checked against an independent reference: librosa, scikit-learn, scipy, or plain arithmetic.

Each test computes the same quantity a second way, outside ``ser_mtl``, and compares value by value:
log-mel features (librosa), verification scores (scikit-learn's cosine similarity), a chunked file's
posterior (the mean of its segments' posteriors, each chunk scored on its own) and ``compare``'s p-values
at the paper's 10 folds x 10 repeats (scipy, a binomial tail and an enumeration of sign flips).
"""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import stats
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import normalize

from ser_mtl.analysis.compare import RANDOM_FLIPS, compare_dirs
from ser_mtl.data.features import LogSpectrogram
from ser_mtl.inference import EmotionRecognizer
from ser_mtl.verification import utterance_embeddings, verification_trials

SR = 16000


# -- log-mel features against librosa ------------------------------------------------------------------
def tones_and_noise(seconds: float = 2.0) -> np.ndarray:
    """220, 1200 and 5200 Hz tones + white noise at -40 dB: energy in every band, no silence."""
    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1200 * t + 1.0)
         + 0.1 * np.sin(2 * np.pi * 5200 * t) + 0.01 * rng.standard_normal(len(t)))
    return x.astype(np.float32)


def test_log_mel_features_equal_librosa_value_by_value():
    x = tones_and_noise(2.0)  # 32000 samples
    cfg = LogSpectrogram(trim_silence=False)  # librosa has no silence removal
    ours = cfg.features(torch.from_numpy(x)).numpy()  # (128, 201)
    # librosa's spelling of LogSpectrogram: a 400-sample periodic Hamming window centred in a 1024-point FFT,
    # 160-sample hop, frames centred with zero padding, |STFT|^2, 128 HTK triangles of unit peak (norm=None)
    power = librosa.feature.melspectrogram(
        y=x, sr=SR, n_fft=1024, win_length=400, hop_length=160, window="hamming", center=True,
        pad_mode="constant", power=2.0, n_mels=128, fmin=0.0, fmax=8000.0, htk=True, norm=None)
    reference = np.log(power + 1e-6)
    assert ours.shape == reference.shape == (128, 1 + 32000 // 160)
    assert float(np.abs(ours - reference).max()) < 1e-3  # 1.7e-4 today (float32 STFTs)
    # the arguments matter: Slaney area normalisation or reflect padding would be far off
    slaney = np.log(librosa.feature.melspectrogram(
        y=x, sr=SR, n_fft=1024, win_length=400, hop_length=160, window="hamming", center=True,
        pad_mode="constant", power=2.0, n_mels=128, fmin=0.0, fmax=8000.0, htk=True, norm="slaney") + 1e-6)
    assert float(np.abs(ours - slaney).max()) > 1.0


# -- verification scores against scikit-learn -----------------------------------------------------------
def test_verification_scores_equal_sklearn_cosine_similarity():
    """3 speakers x 8 utterances x 2 segments of 6-dim d-vectors (norms from 0.5 to 5), 5 enrolled each."""
    rng = np.random.default_rng(4)
    n_spk, n_utt, n_enrol, seed = 3, 8, 5, 7
    speakers = [f"s{k}" for k in range(n_spk) for _ in range(n_utt)]
    utt_vectors = rng.normal(size=(n_spk * n_utt, 6)) * rng.uniform(0.5, 5.0, size=(n_spk * n_utt, 1))
    # two segments per utterance whose mean is the utterance vector
    offset = rng.normal(size=utt_vectors.shape)
    segments = torch.tensor(np.concatenate([utt_vectors + offset, utt_vectors - offset]))  # (48, 6)
    utt = torch.arange(n_spk * n_utt).repeat(2)  # (48,)
    ids, vectors = utterance_embeddings(segments, utt)
    np.testing.assert_allclose(vectors, utt_vectors, atol=1e-12)
    scores, labels, enrolled = verification_trials(vectors, [speakers[int(i)] for i in ids], n_enrol, seed)

    # reference: the documented seeded draw (one permutation per speaker, in sorted order), the speaker model
    # the mean of its enrolment utterances' unit d-vectors, every other utterance scored against every model
    draw = np.random.default_rng(seed)
    models, tests = [], []
    for k in range(n_spk):
        idx = draw.permutation(np.arange(k * n_utt, (k + 1) * n_utt))
        models.append(normalize(utt_vectors[idx[:n_enrol]]).mean(axis=0))
        tests.extend(idx[n_enrol:])
    reference = cosine_similarity(utt_vectors[tests], np.stack(models))  # (9, 3)
    assert enrolled == ["s0", "s1", "s2"]
    assert scores.shape == labels.shape == (9 * 3,)
    np.testing.assert_allclose(scores, reference.ravel(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, (np.repeat(np.arange(n_spk), n_utt - n_enrol)[:, None]
                                           == np.arange(n_spk)).astype(int).ravel())


# -- a chunked file's posterior --------------------------------------------------------------------------
def test_chunked_file_posterior_is_the_mean_of_every_chunks_segment_posteriors(trained_run, corpus, tmp_path):
    recognizer = EmotionRecognizer.from_checkpoint(trained_run / "checkpoints" / "best.ckpt", batch_size=3,
                                                   chunk_seconds=5.0)
    wavs = sorted((corpus / "IEMOCAP_full_release" / "Session1" / "sentences" / "wav").rglob("*.wav"))
    long = np.concatenate([sf.read(p, dtype="float32")[0] for p in wavs[:12]])[:12 * SR]  # 12 s
    assert len(long) == 12 * SR
    path = tmp_path / "long.wav"
    sf.write(path, long, SR, subtype="FLOAT")  # read back bit for bit: the chunks are these samples
    p = recognizer.classify_file(path, segments=True)

    classes = recognizer.classes
    probs = np.array([p.probs[c] for c in classes])  # (C,)
    assert p.segment_probs.shape == (p.n_segments, len(classes)) and p.n_segments == len(p.segment_offsets)
    np.testing.assert_allclose(probs, p.segment_probs.mean(axis=0), rtol=0, atol=1e-6)
    assert p.label == classes[int(probs.argmax())]

    # reference: the three chunks (5 s, 5 s, 2 s) classified as separate recordings, default batch size
    whole_file = EmotionRecognizer(recognizer.model, recognizer.frontend)
    parts = [whole_file.classify_array(long[a:a + 5 * SR], SR, segments=True) for a in (0, 5 * SR, 10 * SR)]
    shifts = np.cumsum([0] + [recognizer.frontend.frames(torch.from_numpy(long[a:a + 5 * SR])).shape[1]
                              for a in (0, 5 * SR)])  # frames of speech before each chunk
    assert p.n_segments == sum(q.n_segments for q in parts) > 3
    np.testing.assert_allclose(p.segment_probs, np.concatenate([q.segment_probs for q in parts]), atol=1e-6)
    np.testing.assert_array_equal(p.segment_offsets,
                                  np.concatenate([q.segment_offsets + s for q, s in zip(parts, shifts)]))
    # the segment-weighted mean of the chunks' posteriors, not the plain mean of the three
    weighted = sum(q.n_segments * np.array([q.probs[c] for c in classes]) for q in parts) / p.n_segments
    np.testing.assert_allclose(probs, weighted, rtol=0, atol=1e-6)


# -- compare at the paper's 10 folds x 10 repeats ---------------------------------------------------------
FOLDS = REPEATS = range(10)


def _write_cv(root: Path, metrics: dict[tuple[int, int], dict[str, float]]) -> str:
    for (fold, rep), values in metrics.items():
        (root / f"fold{fold}_rep{rep}").mkdir(parents=True)
        (root / f"fold{fold}_rep{rep}" / "metrics.json").write_text(
            json.dumps({"fold": fold, "repeat": rep, "seed": rep, **values}))
    return str(root)


def _sign_flip_p_exact(diff: np.ndarray) -> float:
    """Two-sided p of the mean over all 2^n sign patterns (n <= 16)."""
    n = len(diff)
    signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2 - 1  # (2^n, n)
    means = (signs * diff).mean(axis=1)
    return float(np.mean(np.abs(means) >= abs(diff.mean()) * (1 - 1e-9)))


def _sign_flip_p_monte_carlo(diff: np.ndarray, draws: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(draws // 10_000):
        signs = rng.choice([-1.0, 1.0], size=(10_000, len(diff)))
        hits += int(np.sum(np.abs((signs * diff).mean(axis=1)) >= abs(diff.mean()) * (1 - 1e-9)))
    return (hits + 1) / (draws + 1)


def test_compare_at_100_runs_uses_the_approximate_tests_and_agrees_with_scipy(tmp_path):
    """UA: 100 distinct differences 0.0005 .. 0.05 with mixed signs; WA: +-0.01, 61 of 100 positive.

    Per run (n = 100): Wilcoxon's normal approximation (more than 50 non-zero differences) and 100 000 random
    sign flips (more than 16 pairs). Per repeat (n = 10, fold averages): the exact versions of both.
    """
    keys = [(f, r) for r in REPEATS for f in FOLDS]  # (repeat, fold) order, as compare pairs them
    signs = np.where(np.random.default_rng(3).random(100) < 0.6, 1.0, -1.0)
    ua_diff = np.round(signs * 0.0005 * np.arange(1, 101), 12)  # (100,)
    wa_diff = np.where(np.arange(100) < 61, 0.01, -0.01)  # (100,)
    base = {(f, r): 0.50 + 0.003 * f + 0.002 * r for f, r in keys}
    a = _write_cv(tmp_path / "stl", {k: {"ua": base[k], "wa": base[k] + 0.05} for k in keys})
    b = _write_cv(tmp_path / "mtl", {k: {"ua": base[k] + ua_diff[i], "wa": base[k] + 0.05 + wa_diff[i]}
                                     for i, k in enumerate(keys)})
    [comp] = compare_dirs([a, b])["comparisons"]
    ua, wa = comp["metrics"]["ua"], comp["metrics"]["wa"]
    assert ua["per_run"]["n"] == wa["per_run"]["n"] == 100 and ua["per_repeat"]["n"] == 10
    np.testing.assert_allclose([p["b"] - p["a"] for p in ua["per_run"]["pairs"]], ua_diff, atol=1e-12)

    # Wilcoxon, per run: the normal approximation, by hand (no ties, no continuity correction) and by scipy
    run = ua["per_run"]
    assert run["wilcoxon"]["method"] == "approx"
    ranks = stats.rankdata(np.abs(ua_diff))
    w = min(ranks[ua_diff > 0].sum(), ranks[ua_diff < 0].sum())
    z = (w - 100 * 101 / 4) / np.sqrt(100 * 101 * 201 / 24)
    assert run["wilcoxon"]["statistic"] == w
    assert run["wilcoxon"]["p"] == pytest.approx(2 * stats.norm.cdf(z), rel=1e-9)
    assert run["wilcoxon"]["p"] == pytest.approx(stats.wilcoxon(ua_diff, method="approx").pvalue, rel=1e-9)
    assert wa["per_run"]["wilcoxon"]["method"] == "approx"  # all |d| tied: scipy's tie-corrected variance
    assert wa["per_run"]["wilcoxon"]["p"] == pytest.approx(stats.wilcoxon(wa_diff, method="approx").pvalue, rel=1e-9)

    # sign flips, per run: random, against an exact binomial tail (WA) and an independent Monte Carlo (UA)
    for unit in (ua["per_run"], wa["per_run"]):
        assert unit["sign_flip"]["exact"] is False and unit["sign_flip"]["n_resamples"] == RANDOM_FLIPS == 100_000
    binomial = 2 * stats.binom.sf(60, 100, 0.5)  # P(|#positive - 50| >= 11): 0.0352
    assert wa["per_run"]["sign_flip"]["p"] == pytest.approx(binomial, abs=5 * np.sqrt(binomial * (1 - binomial) / 1e5))
    mc = _sign_flip_p_monte_carlo(ua_diff, 100_000, seed=11)
    tolerance = 5 * np.sqrt(2 * mc * (1 - mc) / 1e5)  # two independent estimates of 100 000 draws each
    assert 0.005 < mc < 0.5 and run["sign_flip"]["p"] == pytest.approx(mc, abs=tolerance)

    # the t interval, per run, from scipy's one-sample t test
    ci = stats.ttest_1samp(ua_diff, 0.0).confidence_interval(0.95)
    assert run["mean_diff"] == pytest.approx(ua_diff.mean(), abs=1e-15)
    assert run["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-9)

    # per repeat (fold averages, n = 10): the exact tests, against all 1024 sign patterns and scipy's exact Wilcoxon
    rep = ua["per_repeat"]
    rep_diff = ua_diff.reshape(10, 10).mean(axis=1)  # (repeats,) rows are repeats in (repeat, fold) order
    np.testing.assert_allclose([p["b"] - p["a"] for p in rep["pairs"]], rep_diff, atol=1e-12)
    assert rep["sign_flip"]["exact"] is True and rep["sign_flip"]["n_resamples"] == 1024
    assert rep["sign_flip"]["p"] == pytest.approx(_sign_flip_p_exact(rep_diff), rel=1e-9)
    assert rep["wilcoxon"]["method"] == "exact"
    assert rep["wilcoxon"]["p"] == pytest.approx(stats.wilcoxon(rep_diff, method="exact").pvalue, rel=1e-9)
    assert comp["verdict"]["p"] == rep["sign_flip"]["p"]
