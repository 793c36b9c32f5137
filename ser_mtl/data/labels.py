"""Label schemes: what the primary (emotion) task predicts, and how a manifest row becomes a class index.

Tasks (paper section 5):
- ``categorical``: the four emotions, ``EMOTIONS`` order (angry, happy, neutral, sad).
- ``activation`` / ``valence``: three levels by the thresholds of the paper's Table 2 (``TABLE2_THRESHOLDS``;
  other corpora need explicit ``thresholds``).
- ``av3`` / ``av5``: K-means with k = 3 / 5 on (valence, activation), fitted on the fold's TRAINING rows
  only; a row's class is its nearest centroid. Centroids are sorted by (activation, valence) and named
  "c0".."c{k-1}", so class order does not depend on K-means' arbitrary numbering.

The paper does not say whether utterances outside the four emotions get dimensional labels; with
``restrict_to_categorical=True`` (default) only 4-class rows do, so the tasks see the same utterances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ser_mtl.data.manifest import EMOTIONS, ManifestRow

TASKS = ("categorical", "activation", "valence", "av3", "av5")
LEVELS = {"activation": ["low", "mid", "high"], "valence": ["negative", "neutral", "positive"]}
# Upper bounds of the low and the mid level (paper Table 2); the same for activation and valence.
TABLE2_THRESHOLDS = {"iemocap": (2.0, 3.5), "msp_improv": (2.5, 3.5)}


class LabelSchemeError(ValueError):
    """Unknown task, no thresholds, too few K-means points, or a checkpoint's scheme for another task."""


def _corpus_key(corpus: str) -> str:
    return corpus.strip().lower().replace("-", "_")


def _value(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


class LabelScheme:
    """Maps manifest rows to class indices for one task; see the module docstring for the tasks.

    Args:
        task: one of TASKS.
        corpus: corpus name (as in the manifest's ``corpus`` column); chooses the Table 2 thresholds.
        thresholds: (low_max, mid_max) for activation/valence: value <= low_max -> 0, <= mid_max -> 1,
            else 2. Overrides Table 2; required for corpora other than IEMOCAP and MSP-IMPROV.
        restrict_to_categorical: dimensional labels only for rows whose emotion is in the 4-class set.
        seed: K-means ``random_state`` (av3/av5).
    """

    def __init__(self, task: str, corpus: str, thresholds: tuple[float, float] | None = None,
                 restrict_to_categorical: bool = True, seed: int = 0) -> None:
        if task not in TASKS:
            raise LabelSchemeError(f"unknown label task {task!r}; expected one of {TASKS}")
        self.task, self.corpus, self.seed = task, corpus, seed
        self.restrict_to_categorical = restrict_to_categorical
        self.thresholds: tuple[float, float] | None = None
        self.centroids: np.ndarray | None = None  # (k, 2) columns (valence, activation), av3/av5 only
        if task == "categorical":
            self.classes = list(EMOTIONS)
        elif task in LEVELS:
            if thresholds is None:
                if _corpus_key(corpus) not in TABLE2_THRESHOLDS:
                    raise LabelSchemeError(f"no Table 2 thresholds for corpus {corpus!r} (known: "
                                     f"{sorted(TABLE2_THRESHOLDS)}); pass thresholds=(low_max, mid_max)")
                thresholds = TABLE2_THRESHOLDS[_corpus_key(corpus)]
            low, mid = float(thresholds[0]), float(thresholds[1])
            if not low < mid:
                raise LabelSchemeError(f"thresholds must satisfy low_max < mid_max, got {thresholds}")
            self.thresholds = (low, mid)
            self.classes = list(LEVELS[task])
        else:
            self.classes = [f"c{i}" for i in range(int(task[2:]))]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def needs_fit(self) -> bool:
        return self.task in ("av3", "av5")

    def _dims(self, row: ManifestRow) -> tuple[float, float] | None:
        """(valence, activation) of a row eligible for a dimensional label, else None."""
        if self.restrict_to_categorical and row.emotion not in EMOTIONS:
            return None
        valence, activation = _value(row.valence), _value(row.activation)
        return None if valence is None or activation is None else (valence, activation)

    def fit(self, rows: Sequence[ManifestRow]) -> LabelScheme:
        """Fit the K-means centroids (av3/av5) on `rows`, which must be the training rows only; else a no-op."""
        if not self.needs_fit:
            return self
        points = np.array([d for d in (self._dims(r) for r in rows) if d is not None], dtype=np.float64)
        k, distinct = self.num_classes, len(np.unique(points, axis=0)) if len(points) else 0
        if distinct < k:
            raise LabelSchemeError(f"{self.task}: K-means needs at least {k} distinct (valence, activation) points "
                                   f"among the training rows, got {distinct} distinct in {len(points)} "
                                   f"labelled of {len(rows)} rows")
        # imported here: rebuilding a fitted scheme (classify) needs no sklearn import
        from sklearn.cluster import KMeans
        centroids = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(points).cluster_centers_
        self.centroids = centroids[np.lexsort((centroids[:, 0], centroids[:, 1]))]  # by (activation, valence)
        return self

    def encode(self, row: ManifestRow) -> int:
        """Class index of `row`, or -1 when the row has no label for this task."""
        if self.task == "categorical":
            return EMOTIONS.index(row.emotion) if row.emotion in EMOTIONS else -1
        dims = self._dims(row)
        if dims is None:
            return -1
        if self.thresholds is not None:
            value = dims[1] if self.task == "activation" else dims[0]
            low, mid = self.thresholds
            return 0 if value <= low else 1 if value <= mid else 2
        if self.centroids is None:
            raise RuntimeError(f"{self.task}: encode() before fit(); fit the scheme on the training rows first")
        return int(np.argmin(((self.centroids - np.asarray(dims)) ** 2).sum(axis=1)))  # nearest of (k,)

    def encode_all(self, rows: Sequence[ManifestRow]) -> np.ndarray:
        """(U,) int64 class indices of `rows`, -1 where unlabelled."""
        return np.array([self.encode(r) for r in rows], dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to encode rows again, as JSON-able data (goes into checkpoints)."""
        return {"task": self.task, "corpus": self.corpus, "classes": list(self.classes),
                "thresholds": list(self.thresholds) if self.thresholds is not None else None,
                "restrict_to_categorical": self.restrict_to_categorical, "seed": self.seed,
                "centroids": self.centroids.tolist() if self.centroids is not None else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabelScheme:
        """Rebuild a (fitted) scheme from `state_dict()`."""
        thresholds = tuple(state["thresholds"]) if state["thresholds"] is not None else None
        scheme = cls(state["task"], state["corpus"], thresholds=thresholds,
                     restrict_to_categorical=state["restrict_to_categorical"], seed=state["seed"])
        if state["centroids"] is not None:
            scheme.centroids = np.asarray(state["centroids"], dtype=np.float64)
        if list(state["classes"]) != scheme.classes:
            raise LabelSchemeError(f"label scheme state has classes {state['classes']}, expected {scheme.classes}")
        return scheme

    def __repr__(self) -> str:
        return f"LabelScheme(task={self.task!r}, corpus={self.corpus!r}, classes={self.classes})"


def make_label_scheme(task: str, corpus: str, thresholds: tuple[float, float] | None = None,
                      restrict_to_categorical: bool = True, seed: int = 0) -> LabelScheme:
    """The label scheme for `task` on `corpus`; av3/av5 must then be `fit` on the training rows."""
    return LabelScheme(task, corpus, thresholds, restrict_to_categorical, seed)


def restored_scheme(state: dict[str, Any] | None, task: str) -> LabelScheme | None:
    """A checkpoint's ``label_scheme`` to use as is, or None (nothing fitted); error if for another task."""
    if not state:
        return None
    scheme = LabelScheme.from_state(state)
    if scheme.task != task:
        raise LabelSchemeError(f"the checkpoint's label scheme is task {scheme.task!r} but data.task is {task!r}; "
                         f"set --data.task {scheme.task}")
    return None if scheme.needs_fit and scheme.centroids is None else scheme
