"""Speaker verification trials from d-vectors (ser_mtl.verification)."""

import numpy as np
import pytest
import torch

from ser_mtl.metrics import equal_error_rate
from ser_mtl.verification import speaker_verification_eer, utterance_embeddings, verification_trials


def _vectors(n_speakers: int, per_speaker: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_speakers, 16))
    vectors = np.concatenate([c + spread * rng.normal(size=(per_speaker, 16)) for c in centres])
    speakers = [f"s{k}" for k in range(n_speakers) for _ in range(per_speaker)]
    return vectors, speakers


def test_trial_counts_and_labels():
    vectors, speakers = _vectors(3, 25, 0.1)
    scores, labels, enrolled = verification_trials(vectors, speakers, n_enrol=20)
    assert enrolled == ["s0", "s1", "s2"]
    assert len(scores) == 15 * 3  # 5 test utterances per speaker, scored against 3 speakers
    assert labels.sum() == 15
    assert equal_error_rate(scores, labels) == 0.0  # well-separated speakers


def test_random_vectors_give_chance_eer():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(8 * 60, 32))
    speakers = [f"s{k}" for k in range(8) for _ in range(60)]
    scores, labels, _ = verification_trials(vectors, speakers, n_enrol=20)
    assert 0.4 < equal_error_rate(scores, labels) < 0.6


def test_speakers_with_too_few_utterances_are_left_out_with_a_warning():
    vectors, speakers = _vectors(3, 25, 0.1)
    vectors, speakers = vectors[:-10], speakers[:-10]  # s2 keeps 15 utterances
    with pytest.warns(UserWarning, match="'s2' has 15 utterances"):
        _, _, enrolled = verification_trials(vectors, speakers, n_enrol=20)
    assert enrolled == ["s0", "s1"]
    with pytest.raises(ValueError, match="at least 2 speakers"):
        verification_trials(vectors[:25], speakers[:25], n_enrol=20)


def test_segment_vectors_are_averaged_per_utterance():
    segs = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])  # (S, H)
    utt = torch.tensor([7, 7, 2])
    ids, vectors = utterance_embeddings(segs, utt)
    assert ids.tolist() == [2, 7]
    np.testing.assert_allclose(vectors, [[5.0, 5.0], [2.0, 1.0]])


def test_end_to_end_from_segments():
    vectors, speakers = _vectors(2, 22, 0.05)
    segs = torch.tensor(np.repeat(vectors, 2, axis=0), dtype=torch.float32)  # two segments per utterance
    utt = torch.arange(len(vectors)).repeat_interleave(2)
    result = speaker_verification_eer(segs, utt, dict(enumerate(speakers)), n_enrol=20)
    assert result == {"eer": 0.0, "n_trials": 8, "n_target": 4, "n_speakers": 2}
