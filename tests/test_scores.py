"""The one scoring function (`ser_mtl.metrics.confusion_scores`): WA, UA and macro-F1 against scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ser_mtl.metrics import UtteranceAccuracy, confusion_matrix, confusion_scores, score_predictions


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("num_classes", [2, 4, 6, 8])
def test_scores_equal_scikit_learns_on_random_predictions(seed, num_classes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.integers(0, num_classes, n)
    yhat = np.where(rng.random(n) < 0.5, y, rng.integers(0, num_classes, n))  # about half right
    got = score_predictions(y, yhat, num_classes)
    assert got["wa"] == pytest.approx(accuracy_score(y, yhat), abs=1e-12)
    assert got["ua"] == pytest.approx(balanced_accuracy_score(y, yhat), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(f1_score(y, yhat, average="macro", zero_division=0), abs=1e-12)
    assert np.asarray(got["confmat"]).sum() == n


def test_known_cases():
    perfect = confusion_scores(np.diag([3, 2, 5]))
    assert perfect == {"wa": 1.0, "ua": 1.0, "macro_f1": 1.0}
    # everything predicted as class 0: WA = its share, UA = 1/3, F1 = only class 0 scores 2*4/(2*4+6) = 4/7
    cm = confusion_matrix(np.array([0] * 4 + [1] * 3 + [2] * 3), np.zeros(10, np.int64), 3)
    scores = confusion_scores(cm)
    assert scores["wa"] == pytest.approx(0.4) and scores["ua"] == pytest.approx(1 / 3)
    assert scores["macro_f1"] == pytest.approx((8 / 14 + 0 + 0) / 3)
    with pytest.raises(ValueError, match="empty confusion matrix"):
        confusion_scores(np.zeros((3, 3)))


def test_the_metric_logs_what_the_function_gives():
    metric = UtteranceAccuracy(6)
    rng = np.random.default_rng(3)
    probs = torch.from_numpy(rng.dirichlet(np.ones(6), size=40)).float()  # 40 segments
    utt = torch.arange(40) // 2  # 20 utterances of 2 segments
    labels = torch.from_numpy(rng.integers(0, 6, 20)).repeat_interleave(2)
    metric.update(probs, utt, labels)
    out = metric.compute()
    mean = probs.reshape(20, 2, 6).mean(1).argmax(1).numpy()
    want = score_predictions(labels[::2].numpy(), mean, 6)
    for key in ("wa", "ua", "macro_f1"):
        assert float(out[key]) == pytest.approx(want[key], abs=1e-6)
    np.testing.assert_array_equal(out["confmat"].numpy(), want["confmat"])
