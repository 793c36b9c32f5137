"""The task registry's numbers: Lin's CCC against a numpy reference and known cases, the 1 - CCC loss, the
utterance-level CCC of averaged segments, the scores' ranges and directions, the monitor rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ser_mtl.analysis.summary import SummaryError, check_scores
from ser_mtl.metrics import UtteranceRegression
from ser_mtl.models.losses import ccc_loss, classification_loss, labelled_index, task_loss
from ser_mtl.tasks import (
    SCORES,
    TASKS,
    TaskError,
    auto_monitor,
    check_tasks,
    concordance_correlation,
    monitor_mode,
    value_range,
)


def numpy_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin (1989) from numpy's own moments: 2 s_xy / (s_x^2 + s_y^2 + (m_x - m_y)^2), population (bias) moments."""
    cov = np.cov(x, y, bias=True)
    return 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (x.mean() - y.mean()) ** 2)


def test_ccc_matches_the_numpy_reference_on_random_data():
    rng = np.random.default_rng(0)
    for n in (2, 7, 100, 1000):
        x = rng.normal(size=n)
        y = 0.6 * x + rng.normal(scale=0.8, size=n) + 0.3
        assert concordance_correlation(x, y) == pytest.approx(numpy_ccc(x, y), abs=1e-12)
        assert float(1 - ccc_loss(torch.tensor(x), torch.tensor(y))) == pytest.approx(numpy_ccc(x, y), abs=1e-5)


def test_ccc_known_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, population variance 2
    assert concordance_correlation(x, x) == pytest.approx(1.0)
    assert concordance_correlation(x - 3, -(x - 3)) == pytest.approx(-1.0)  # negated around a zero mean
    # shifted by c: 2 var / (2 var + c^2) = 4 / (4 + 1) for c = 1; Pearson's r would still be 1
    assert concordance_correlation(x + 1, x) == pytest.approx(0.8)
    # scaled by 2 around the mean: cov 4, var 8 + 2: 8 / 10
    assert concordance_correlation(2 * (x - 3) + 3, x) == pytest.approx(0.8)
    assert concordance_correlation([1.0, 1.0], [0.0, 2.0]) == pytest.approx(0.0)  # a constant prediction
    with pytest.raises(ValueError, match="undefined"):
        concordance_correlation([2.0, 2.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="length >= 2"):
        concordance_correlation([1.0], [1.0])
    # on [0, 1] or on the corpus's 1-5 scale: one affine map of both sides leaves CCC alone
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=20), rng.uniform(size=20)
    assert concordance_correlation(1 + 4 * a, 1 + 4 * b) == pytest.approx(concordance_correlation(a, b))


def test_ccc_loss_and_its_gradient():
    target = torch.tensor([0.1, 0.5, 0.9, 0.3])
    assert float(ccc_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)
    pred = torch.full((4,), 0.5, requires_grad=True)
    loss = ccc_loss(pred, target)
    assert float(loss) == pytest.approx(1.0)  # constant prediction: CCC 0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert float(task_loss("mse", torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))) == pytest.approx(0.5)


def test_l_c_weights_primary_tasks_with_beta_and_auxiliary_ones_with_one_minus_beta():
    one = torch.tensor(1.0)
    losses = {"emotion": one, "valence": 2 * one, "gender": 3 * one, "age": 4 * one}
    assert float(classification_loss(losses, 0.25)) == pytest.approx(0.25 * 3 + 0.75 * 7)


def test_value_labels_are_nan_for_missing_and_refuse_infinity():
    values = torch.tensor([0.2, float("nan"), 0.7])
    assert labelled_index(values, "valence", 1).tolist() == [0, 2]
    with pytest.raises(ValueError, match="infinite"):
        labelled_index(torch.tensor([float("inf")]), "valence", 1)
    with pytest.raises(ValueError, match=r"float tensor, got torch.int64 .*NaN = missing"):
        labelled_index(torch.tensor([1, 2]), "valence", 1)


def test_utterance_ccc_averages_the_segments_first():
    metric = UtteranceRegression()
    # utterance 0: segments 0.2, 0.4 -> 0.3; utterance 1: 0.8; utterance 2: 0.5, 0.7, 0.9 -> 0.7; NaN target ignored
    metric.update(torch.tensor([0.2, 0.4, 0.8, 0.5]), torch.tensor([0, 0, 1, 2]),
                  torch.tensor([0.25, 0.25, 0.75, 0.5]))
    metric.update(torch.tensor([0.7, 0.9, 0.1]), torch.tensor([2, 2, 3]), torch.tensor([0.5, 0.5, float("nan")]))
    utt, pred, target = metric.utterance_table()
    assert utt.tolist() == [0, 1, 2]
    assert pred.tolist() == pytest.approx([0.3, 0.8, 0.7]) and target.tolist() == pytest.approx([0.25, 0.75, 0.5])
    assert float(metric.compute()) == pytest.approx(numpy_ccc(np.array([0.3, 0.8, 0.7]), np.array([0.25, 0.75, 0.5])))


def test_scores_have_ranges_and_directions():
    data = {"ccc_valence": -0.1, "ccc_mean": 0.4, "age_mae": 7.3, "wa": 0.5, "ua": 0.5}
    assert check_scores("m.json", data) == data  # a CCC below 0 and an error in years are scores
    with pytest.raises(SummaryError, match=r"expected 'ccc_valence' to be a number in \[-1, 1\] \(a CCC\), got 1.5"):
        check_scores("m.json", {"ccc_valence": 1.5})
    with pytest.raises(SummaryError, match=r"'age_mae' to be a number in \[0, inf\] \(years\), got -2"):
        check_scores("m.json", {"age_mae": -2})
    assert [k for k, s in SCORES.items() if not s.higher_is_better] == ["age_mae", "eer"]
    assert monitor_mode("val/ccc_mean") == "max" and monitor_mode("val/loss_age") == "min"
    assert monitor_mode("val/eer") == "min" and monitor_mode("val/ua") == "max" and monitor_mode("val/x") == "max"


def test_the_auto_monitor_follows_the_registry():
    assert auto_monitor(["emotion", "valence", "gender"]) == "val/ua"
    assert auto_monitor(["gender", "valence"]) == "val/ccc_mean"
    assert auto_monitor(["speaker", "gender"]) == "val/speaker_acc"
    assert auto_monitor(["age"]) == "val/loss_age"
    assert check_tasks(["valence", "age"]) == ["valence", "age"]
    with pytest.raises(TaskError, match="subset of"):
        check_tasks(["valence", "valence"])


def test_value_ranges_come_from_the_corpus_the_setting_or_the_task():
    assert value_range("valence", "iemocap") == (1.0, 5.0)
    assert value_range("valence", "MSP-Podcast") == (1.0, 7.0)
    assert value_range("valence", "iemocap", {"valence": [0, 10]}) == (0.0, 10.0)
    assert value_range("age", "crema_d") == (0.0, 100.0)
    with pytest.raises(TaskError, match=r"no scale known for corpus 'csv'.*data.value_ranges"):
        value_range("valence", "csv")
    with pytest.raises(TaskError, match="low < high"):
        value_range("valence", "iemocap", {"valence": [5, 1]})
    assert all(spec.kind == "regression" for name, spec in TASKS.items() if name in ("activation", "age"))
    assert math.isnan(TASKS["valence"].missing) and TASKS["emotion"].missing == -1
