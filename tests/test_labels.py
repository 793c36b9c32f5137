"""Label schemes: Table 2 boundaries, K-means fitted on training rows only, nearest-centroid encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser_mtl.data.labels import LabelScheme, make_label_scheme
from ser_mtl.data.manifest import ManifestRow


def _row(i: int = 0, emotion: str = "neutral", valence: float | None = 3.0, activation: float | None = 3.0,
         corpus: str = "iemocap") -> ManifestRow:
    return ManifestRow(utt_id=f"u{i}", corpus=corpus, path=f"u{i}.wav", duration=1.0, speaker="s1", gender="F",
                       session="1", emotion=emotion, raw_emotion="", valence=valence, activation=activation,
                       dominance=3.0)


def test_categorical_order_and_missing():
    scheme = make_label_scheme("categorical", "iemocap")
    assert scheme.classes == ["angry", "happy", "neutral", "sad"]
    assert [scheme.encode(_row(emotion=e)) for e in ["angry", "happy", "neutral", "sad", ""]] == [0, 1, 2, 3, -1]


@pytest.mark.parametrize("corpus, cases", [
    ("iemocap", [(1.0, 0), (2.0, 0), (2.0001, 1), (3.5, 1), (3.5001, 2), (5.0, 2)]),
    ("msp_improv", [(1.0, 0), (2.0, 0), (2.5, 0), (2.5001, 1), (3.5, 1), (3.5001, 2), (5.0, 2)]),
])
def test_table2_boundaries(corpus, cases):
    act = make_label_scheme("activation", corpus)
    val = make_label_scheme("valence", corpus)
    assert act.classes == ["low", "mid", "high"]
    assert val.classes == ["negative", "neutral", "positive"]
    for value, expected in cases:
        assert act.encode(_row(activation=value, valence=9.0, corpus=corpus)) == expected, value
        assert val.encode(_row(valence=value, activation=9.0, corpus=corpus)) == expected, value


def test_dimensional_missing_values_and_restriction():
    act = make_label_scheme("activation", "iemocap")
    assert act.encode(_row(activation=None)) == -1
    assert act.encode(_row(activation=float("nan"))) == -1
    assert act.encode(_row(emotion="", activation=4.0)) == -1  # outside the 4-class set: restricted
    free = make_label_scheme("activation", "iemocap", restrict_to_categorical=False)
    assert free.encode(_row(emotion="", activation=4.0)) == 2


def test_other_corpus_needs_thresholds():
    with pytest.raises(ValueError, match="no Table 2 thresholds for corpus 'csv'"):
        make_label_scheme("valence", "csv")
    scheme = make_label_scheme("valence", "csv", thresholds=(0.3, 0.6))
    assert [scheme.encode(_row(valence=v)) for v in (0.3, 0.31, 0.6, 0.61)] == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="unknown label task"):
        make_label_scheme("arousal", "iemocap")


def _cloud(rng: np.random.Generator, n: int, start: int = 0) -> list[ManifestRow]:
    """Rows around five (valence, activation) centres, as quantised as real annotations."""
    centres = np.array([[1.5, 1.5], [4.5, 1.8], [3.0, 3.0], [1.6, 4.4], [4.4, 4.5]])
    pts = centres[rng.integers(0, 5, n)] + rng.normal(0, 0.35, (n, 2))
    pts = np.clip(np.round(pts * 6) / 6, 1, 5)
    return [_row(start + i, valence=float(v), activation=float(a)) for i, (v, a) in enumerate(pts)]


@pytest.mark.parametrize("task, k", [("av3", 3), ("av5", 5)])
def test_kmeans_fitted_on_train_only_and_nearest_centroid(task, k):
    rng = np.random.default_rng(0)
    train, test = _cloud(rng, 300), _cloud(rng, 100, start=300)
    scheme = make_label_scheme(task, "iemocap", seed=3).fit(train)
    assert scheme.classes == [f"c{i}" for i in range(k)]
    cents = scheme.centroids  # (k, 2) valence, activation
    assert cents.shape == (k, 2)
    assert list(np.lexsort((cents[:, 0], cents[:, 1]))) == list(range(k))  # sorted by (activation, valence)

    # the centroids depend on the rows passed to fit() only: altered test rows change nothing, while the
    # same rows leaking into fit() would move them
    moved = [_row(300 + i, valence=5.0, activation=1.0) for i in range(len(test))]
    again = make_label_scheme(task, "iemocap", seed=3).fit(train)
    np.testing.assert_array_equal(again.centroids, cents)
    assert not np.allclose(make_label_scheme(task, "iemocap", seed=3).fit(train + moved).centroids, cents)

    # every row goes to its nearest centroid: numpy reference
    pts = np.array([[r.valence, r.activation] for r in train + test])
    ref = np.argmin(((pts[:, None, :] - cents[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(scheme.encode_all(train + test), ref)
    assert len(set(ref.tolist())) == k
    assert scheme.encode(_row(valence=None)) == -1


def test_av3_on_a_known_layout():
    # three tight groups: the centroids are their means, ordered low, mid, high activation
    rows = ([_row(i, valence=4.0, activation=1.0 + 0.1 * (i % 2)) for i in range(10)]
            + [_row(10 + i, valence=2.0, activation=3.0) for i in range(10)]
            + [_row(20 + i, valence=1.0, activation=5.0) for i in range(10)])
    scheme = make_label_scheme("av3", "msp_improv").fit(rows)
    np.testing.assert_allclose(scheme.centroids, [[4.0, 1.05], [2.0, 3.0], [1.0, 5.0]])
    assert scheme.encode(_row(valence=3.9, activation=1.9)) == 0
    assert scheme.encode(_row(valence=1.4, activation=4.2)) == 2


def test_fit_errors_and_state_round_trip():
    with pytest.raises(RuntimeError, match="encode\\(\\) before fit\\(\\)"):
        make_label_scheme("av5", "iemocap").encode(_row())
    with pytest.raises(ValueError, match="at least 5 distinct"):
        make_label_scheme("av5", "iemocap").fit([_row(i, valence=1.0 + i, activation=2.0) for i in range(4)])
    rows = _cloud(np.random.default_rng(1), 200)
    scheme = make_label_scheme("av5", "iemocap", seed=1).fit(rows)
    state = json.loads(json.dumps(scheme.state_dict()))  # JSON-able, as stored in a checkpoint
    back = LabelScheme.from_state(state)
    assert back.classes == scheme.classes
    np.testing.assert_array_equal(back.encode_all(rows), scheme.encode_all(rows))
    act = LabelScheme.from_state(make_label_scheme("activation", "msp_improv").state_dict())
    assert act.thresholds == (2.5, 3.5)
    assert make_label_scheme("categorical", "iemocap").fit(rows).centroids is None  # no-op fit


def test_classify_restores_the_checkpoints_kmeans_scheme(tmp_path):
    """`EmotionRecognizer` (ser-mtl classify) rebuilds the saved scheme: class names and the av3 centroids."""
    import torch

    from ser_mtl.data.features import LogSpectrogram
    from ser_mtl.frontend import FrontEnd
    from ser_mtl.inference import CheckpointError, EmotionRecognizer
    from ser_mtl.models.aae import MultiTaskAAE

    scheme = make_label_scheme("av3", "iemocap")
    scheme.centroids = np.array([[4.5, 1.5], [1.5, 3.0], [3.0, 4.5]])  # (3, 2) valence, activation
    front = FrontEnd(LogSpectrogram(n_bins=16), np.zeros(16), np.ones(16), 16, 16, scheme.classes, label_scheme=scheme)
    model = MultiTaskAAE(num_emotions=3, num_speakers=2, input_size=(16, 16), encoder_channels=(4, 4, 4),
                         encoder_pools=((2, 2), (2, 2), (2, 2)), head_conv_channels=4, head_hidden=8,
                         class_names=scheme.classes)
    ckpt = tmp_path / "av3.ckpt"
    state = {**front.state_dict(), "label_scheme": scheme.state_dict(), "speakers": ["a", "b"]}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "SERDataModule": state}, ckpt)
    recognizer = EmotionRecognizer.from_checkpoint(ckpt)
    assert recognizer.classes == ["c0", "c1", "c2"] and recognizer.label_scheme.task == "av3"
    np.testing.assert_array_equal(recognizer.label_scheme.centroids, scheme.centroids)
    assert recognizer.label_scheme.encode(_row(valence=4.4, activation=1.4)) == 0
    # a scheme whose classes are not the checkpoint's is refused, naming the file
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "SERDataModule": {**state, "classes": ["x", "y", "z"]}}, ckpt)
    with pytest.raises(CheckpointError, match=r"av3.ckpt: FrontEnd: the label scheme's classes \['c0', 'c1', 'c2'\]"):
        EmotionRecognizer.from_checkpoint(ckpt)
    legacy = {k: v for k, v in state.items() if k != "label_scheme"}  # a front-end state without a scheme
    assert FrontEnd.from_state_dict(legacy).label_scheme is None


def test_restored_scheme_keeps_fitted_centroids_only():
    from ser_mtl.data.labels import restored_scheme

    fitted = make_label_scheme("av5", "iemocap", seed=1).fit(_cloud(np.random.default_rng(1), 200))
    back = restored_scheme(fitted.state_dict(), "av5")
    np.testing.assert_array_equal(back.centroids, fitted.centroids)
    assert restored_scheme(make_label_scheme("av5", "iemocap").state_dict(), "av5") is None  # nothing fitted yet
    assert restored_scheme(None, "av5") is None
    assert restored_scheme(make_label_scheme("valence", "msp_improv").state_dict(), "valence").thresholds == (2.5, 3.5)
    with pytest.raises(ValueError, match="task 'av5' but data.task is 'av3'; set --data.task av5"):
        restored_scheme(fitted.state_dict(), "av3")
