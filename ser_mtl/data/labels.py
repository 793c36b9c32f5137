"""Label schemes: what the primary (emotion) task predicts, and how a manifest row becomes a class index.

Class sets: the manifest keeps each corpus's own emotion label (``angry``, ``excited``, ``disgust``, ...);
the scheme's ``emotion_classes`` (``data.classes``, default the paper's four, ``EMOTIONS``) choose the classes,
in that order, and ``class_map`` (``data.class_map``) merges labels first (default for IEMOCAP: excited ->
happy, as the paper; none elsewhere). A row whose (merged) label is not a class has no categorical label: it
is unlabelled speech (``data.use_unlabelled``), never dropped by a reader.

Tasks (paper section 5):
- ``categorical``: the ``emotion_classes`` (default angry, happy, neutral, sad).
- ``activation`` / ``valence``: three levels by the thresholds of the paper's Table 2 (``TABLE2_THRESHOLDS``;
  other corpora need explicit ``thresholds``).
- ``av3`` / ``av5``: K-means with k = 3 / 5 on (valence, activation), fitted on the fold's TRAINING rows
  only; a row's class is its nearest centroid. Centroids are sorted by (activation, valence) and named
  "c0".."c{k-1}", so class order does not depend on K-means' arbitrary numbering.

The paper does not say whether utterances outside the four emotions get dimensional labels; with
``restrict_to_categorical=True`` (default) only rows of the chosen classes do, so the tasks see the same
utterances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ser_mtl.data.manifest import EMOTIONS, ManifestRow
from ser_mtl.tasks import corpus_key

TASKS = ("categorical", "activation", "valence", "av3", "av5")
LEVELS = {"activation": ["low", "mid", "high"], "valence": ["negative", "neutral", "positive"]}
# Upper bounds of the low and the mid level (paper Table 2); the same for activation and valence.
TABLE2_THRESHOLDS = {"iemocap": (2.0, 3.5), "msp_improv": (2.5, 3.5)}
# Label merges by corpus when data.class_map is not given (paper 4.1: IEMOCAP's excited joins happy).
DEFAULT_CLASS_MAP = {"iemocap": {"excited": "happy"}}


class LabelSchemeError(ValueError):
    """Unknown task, no thresholds, too few K-means points, or a checkpoint's scheme for another task."""


def _value(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


class LabelScheme:
    """Maps manifest rows to class indices for one task; see the module docstring for the tasks.

    Args:
        task: one of TASKS.
        corpus: corpus name (as in the manifest's ``corpus`` column); chooses the Table 2 thresholds.
        thresholds: (low_max, mid_max) for activation/valence: value <= low_max -> 0, <= mid_max -> 1,
            else 2. Overrides Table 2; required for corpora other than IEMOCAP and MSP-IMPROV.
        restrict_to_categorical: dimensional labels only for rows whose emotion is one of ``emotion_classes``.
        seed: K-means ``random_state`` (av3/av5).
        emotion_classes: the emotion classes, in class-index order (None: the paper's four, ``EMOTIONS``).
        class_map: corpus label -> class, applied before ``emotion_classes`` (None: ``DEFAULT_CLASS_MAP``).
    """

    def __init__(self, task: str, corpus: str, thresholds: tuple[float, float] | None = None,
                 restrict_to_categorical: bool = True, seed: int = 0, emotion_classes: Sequence[str] | None = None,
                 class_map: dict[str, str] | None = None) -> None:
        if task not in TASKS:
            raise LabelSchemeError(f"unknown label task {task!r}; expected one of {TASKS}")
        self.task, self.corpus, self.seed = task, corpus, seed
        self.restrict_to_categorical = restrict_to_categorical
        self.emotion_classes = [str(c) for c in (emotion_classes if emotion_classes is not None else EMOTIONS)]
        if len(self.emotion_classes) < 2 or len(set(self.emotion_classes)) != len(self.emotion_classes) or \
                not all(self.emotion_classes):
            raise LabelSchemeError(f"data.classes {self.emotion_classes}: expected at least 2 distinct class names")
        self.class_map = dict(class_map if class_map is not None else DEFAULT_CLASS_MAP.get(corpus_key(corpus), {}))
        if unknown := sorted({v for v in self.class_map.values() if v not in self.emotion_classes}):
            raise LabelSchemeError(f"data.class_map {self.class_map} merges labels into {unknown}, which "
                                   f"{'is' if len(unknown) == 1 else 'are'} not among data.classes "
                                   f"{self.emotion_classes}")
        self.thresholds: tuple[float, float] | None = None
        self.centroids: np.ndarray | None = None  # (k, 2) columns (valence, activation), av3/av5 only
        if task == "categorical":
            self.classes = list(self.emotion_classes)
        elif task in LEVELS:
            if thresholds is None:
                if corpus_key(corpus) not in TABLE2_THRESHOLDS:
                    raise LabelSchemeError(f"no Table 2 thresholds for corpus {corpus!r} (known: "
                                     f"{sorted(TABLE2_THRESHOLDS)}); pass thresholds=(low_max, mid_max)")
                thresholds = TABLE2_THRESHOLDS[corpus_key(corpus)]
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

    def category(self, row: ManifestRow) -> str | None:
        """The row's emotion class (its label after ``class_map``) if it is one of ``emotion_classes``, else None."""
        label = self.class_map.get(row.emotion, row.emotion)
        return label if label and label in self.emotion_classes else None

    def _dims(self, row: ManifestRow) -> tuple[float, float] | None:
        """(valence, activation) of a row eligible for a dimensional label, else None."""
        if self.restrict_to_categorical and self.category(row) is None:
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
            label = self.category(row)
            return self.emotion_classes.index(label) if label is not None else -1
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
                "centroids": self.centroids.tolist() if self.centroids is not None else None,
                "emotion_classes": list(self.emotion_classes), "class_map": dict(self.class_map)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabelScheme:
        """Rebuild a (fitted) scheme from `state_dict()`."""
        thresholds = tuple(state["thresholds"]) if state["thresholds"] is not None else None
        # a state written before class sets were chosen holds the paper's four and IEMOCAP's merge
        scheme = cls(state["task"], state["corpus"], thresholds=thresholds,
                     restrict_to_categorical=state["restrict_to_categorical"], seed=state["seed"],
                     emotion_classes=state.get("emotion_classes"), class_map=state.get("class_map"))
        if state["centroids"] is not None:
            scheme.centroids = np.asarray(state["centroids"], dtype=np.float64)
        if list(state["classes"]) != scheme.classes:
            raise LabelSchemeError(f"label scheme state has classes {state['classes']}, expected {scheme.classes}")
        return scheme

    def __repr__(self) -> str:
        return f"LabelScheme(task={self.task!r}, corpus={self.corpus!r}, classes={self.classes})"


def make_label_scheme(task: str, corpus: str, thresholds: tuple[float, float] | None = None,
                      restrict_to_categorical: bool = True, seed: int = 0, classes: Sequence[str] | None = None,
                      class_map: dict[str, str] | None = None) -> LabelScheme:
    """The label scheme for `task` on `corpus`; av3/av5 must then be `fit` on the training rows."""
    return LabelScheme(task, corpus, thresholds, restrict_to_categorical, seed, classes, class_map)


def restored_scheme(state: dict[str, Any] | None, task: str, current: LabelScheme | None = None) -> LabelScheme | None:
    """A checkpoint's ``label_scheme`` to use as is, or None (nothing fitted); error if for another task or
    (given the ``current`` scheme of the data settings) other emotion classes."""
    if not state:
        return None
    scheme = LabelScheme.from_state(state)
    if scheme.task != task:
        raise LabelSchemeError(f"the checkpoint's label scheme is task {scheme.task!r} but data.task is {task!r}; "
                         f"set --data.task {scheme.task}")
    if current is not None and (scheme.emotion_classes, scheme.class_map) != (current.emotion_classes,
                                                                            current.class_map):
        raise LabelSchemeError(f"the checkpoint was trained on classes {scheme.emotion_classes} (class_map "
                               f"{scheme.class_map}) but data.classes / data.class_map give {current.emotion_classes} "
                               f"({current.class_map}); set them as in training")
    return None if scheme.needs_fit and scheme.centroids is None else scheme
