"""The classical baseline: utterance features + a class-balanced linear classifier on the network's split.

Why and how to run it: ``baseline_command`` (``ser-mtl baseline``); every fold: ``baseline_cv``.
"""

from __future__ import annotations

import csv
import io
from typing import Literal, get_args

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ser_mtl.baselines.opensmile_features import FEATURE_SETS, Audio, BaselineError, SmileCache
from ser_mtl.io_utils import atomic_write_json, atomic_write_text
from ser_mtl.metrics import score_predictions

Stats = Literal["mean_std", "std"]
STATS = get_args(Stats)
Features = Literal["stats", "egemaps", "compare"]
FEATURES = get_args(Features)
Classifier = Literal["logreg", "linear_svm"]
CLASSIFIERS = get_args(Classifier)
C_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)
_CLASSIFIER_LABEL = {"logreg": "LogReg", "linear_svm": "linear SVM"}


def utterance_statistics(frames: np.ndarray, stats: str = "mean_std") -> np.ndarray:
    """(F, T) log spectrogram -> (4F,) mean and std of the frames and of their frame-to-frame deltas,
    or with ``stats="std"`` (2F,) the two standard deviations only."""
    if stats not in STATS:
        raise ValueError(f"utterance_statistics: stats must be one of {STATS}, got {stats!r}")
    x = frames.astype(np.float64)
    delta = np.diff(x, axis=1) if x.shape[1] > 1 else np.zeros_like(x)
    if stats == "std":
        return np.concatenate([x.std(1), delta.std(1)])
    return np.concatenate([x.mean(1), x.std(1), delta.mean(1), delta.std(1)])


def baseline_label(features: str, classifier: str, stats: str = "mean_std") -> str:
    """The row name in reports: ``eGeMAPS + LogReg``, ``ComParE + linear SVM``, ``spectrogram stats (std) + LogReg``."""
    name = FEATURE_SETS[features][2] if features in FEATURE_SETS else (
        "spectrogram stats" + (" (std)" if stats == "std" else ""))
    return f"{name} + {_CLASSIFIER_LABEL[classifier]}"


def make_classifier(classifier: str, c: float, seed: int = 0):
    """Standardisation + a class-balanced linear classifier with inverse regularisation ``c``."""
    if classifier == "logreg":
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    elif classifier == "linear_svm":
        model = LinearSVC(C=c, class_weight="balanced", max_iter=20000, random_state=seed)
    else:
        raise BaselineError(f"--baseline.classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    return make_pipeline(StandardScaler(), model)




class _Describer:
    """Turns (store, rows, indices) into a feature matrix for one ``--baseline.features`` choice."""

    def __init__(self, features: str, stats: str, audio: Audio, datamodule) -> None:
        if features not in FEATURES:
            raise BaselineError(f"--baseline.features must be one of {FEATURES}, got {features!r}")
        self.features, self.stats = features, stats
        self.frontend = type(datamodule.features).__name__  # LogSpectrogram, PretrainedFeatures, ...
        self.num_workers = int(datamodule.hparams.num_workers)
        self.smile = (SmileCache(features, datamodule.features, datamodule.hparams.cache_dir, audio)
                      if features in FEATURE_SETS else None)
        self.n_extracted = 0

    def __call__(self, store, indices: list[int]) -> np.ndarray:
        if self.smile is None:
            return np.stack([utterance_statistics(store.frames(i), self.stats) for i in indices])  # (U, 4F) | (U, 2F)
        matrix, extracted = self.smile.features(store.rows, store.root, indices, self.num_workers)  # (U, D)
        self.n_extracted += extracted
        return matrix

    def description(self) -> str:
        if self.smile is not None:
            name, dim, _ = FEATURE_SETS[self.features]
            return f"openSMILE {name} functionals ({dim}) of the {self.smile.audio} audio"
        kind = "mean/std" if self.stats == "mean_std" else "std"
        frames = "log-spectrogram frames" if self.frontend == "LogSpectrogram" else f"{self.frontend} frames"
        return f"per-row {kind} of {frames} and deltas"


def _labelled(store, rows, indices, label_scheme) -> tuple[list[int], np.ndarray]:
    """The utterances of ``indices`` with features in the store and a label of the task, and (U,) labels."""
    keep = [int(i) for i in indices if store.lengths[i] > 0 and label_scheme.encode(rows[i]) >= 0]
    return keep, np.array([label_scheme.encode(rows[i]) for i in keep], dtype=np.int64)


def run_baseline(datamodule, out: str | None = None, features: Features = "stats", stats: Stats = "mean_std",
                 classifier: Classifier = "logreg", audio: Audio = "trimmed", c_grid: list[float] | None = None,
                 predictions: str | None = None, seed: int = 0) -> dict:
    """Fit on the training split, pick C on validation, report WA/UA on test (fractions).

    ``datamodule``: the ``SERDataModule`` of the configuration; ``seed``: the linear SVM's ``random_state``;
    the other arguments are ``ser-mtl baseline``'s (``ser_mtl.baselines.baseline_command.baseline``).
    """
    grid = tuple(c_grid or C_GRID)
    if not grid or min(grid) <= 0:
        raise BaselineError(f"--baseline.c_grid must be positive numbers, got {list(grid)}")
    describe = _Describer(features, stats, audio, datamodule)  # fails early, before the stores are built
    datamodule.prepare_data()
    datamodule.setup("fit")
    rows, split = datamodule.rows, datamodule.split
    eval_rows, _ = datamodule.evaluation_split()
    eval_store = datamodule.stores["target" if datamodule.target_rows else "primary"]
    scheme = datamodule.label_scheme
    train, y_train = _labelled(datamodule.stores["primary"], rows, split.train, scheme)
    val, y_val = _labelled(eval_store, eval_rows, split.val, scheme)
    test, y_test = _labelled(eval_store, eval_rows, split.test, scheme)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if not part:
            raise BaselineError(f"the {name} split of {datamodule.hparams.scheme} fold {datamodule.hparams.fold} "
                                f"has no labelled utterance with features; no baseline can be fitted")
    x_train = describe(datamodule.stores["primary"], train)  # (U_train, D)
    x_val, x_test = describe(eval_store, val), describe(eval_store, test)  # (U_val, D), (U_test, D)
    n_classes = len(datamodule.class_names)
    fitted = [(c, make_classifier(classifier, c, seed).fit(x_train, y_train)) for c in grid]
    val_ua, c, model = max(((score_predictions(y_val, m.predict(x_val), n_classes)["ua"], c, m) for c, m in fitted),
                           key=lambda t: t[0])  # the first C of equal validation UAs
    pred = model.predict(x_test).astype(np.int64)  # (U_test,)
    result = {**score_predictions(y_test, pred, n_classes), "n_utterances": len(test), "classes": datamodule.class_names,
              "C": c, "val_ua": val_ua, "c_grid": list(grid), "features": features,
              "feature_description": describe.description(), "n_features": int(x_train.shape[1]),
              "classifier": classifier, "label": baseline_label(features, classifier, stats),
              "n_extracted": describe.n_extracted}
    result.update({"stats": stats} if features == "stats" else {"audio": audio})
    if predictions:
        atomic_write_text(predictions, predictions_csv([eval_rows[i] for i in test], y_test, pred,
                                                       datamodule.class_names))
    if out:
        atomic_write_json(out, result)
    return result


def predictions_csv(rows, labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> str:
    """``utt_id,speaker,label,pred`` per test utterance (class names)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["utt_id", "speaker", "label", "pred"])
    writer.writerows([r.utt_id, r.speaker, classes[y], classes[p]] for r, y, p in zip(rows, labels, preds))
    return buffer.getvalue()


def format_result(result: dict) -> str:
    return (f"baseline {result['label']} ({result['feature_description']}, C={result['C']:g}): "
            f"WA {100 * result['wa']:.2f} %  UA {100 * result['ua']:.2f} %  on {result['n_utterances']} test utterances")
