"""The tasks a `MultiTaskAAE` learns, one registry entry each, and the scores runs report.

A `TaskSpec` declares what the rest of the package needs to know about a task: its head (``kind``:
class logits, or one value), its loss, its target type and missing marker (int64 class index, -1 missing;
float32 value, NaN missing), where its target comes from (``column`` of the manifest for a value), its
weight in L_c (``role``: ``primary`` tasks get beta, ``auxiliary`` ones 1 - beta, paper eq. 2) and its
scores with their range and direction (`Score`). The model, the datasets, ``test_metrics.json`` /
``predictions.csv``, the summary, ``compare``, the report, selection on validation and
``checkpoint.monitor: auto`` iterate over `TASKS` and `SCORES`; adding a task is one entry here (``age``
shows it).

Values of a regression task are learnt on a [0, 1] scale: the datamodule maps the corpus's scale
(``data.value_ranges``, defaults in `DEFAULT_VALUE_RANGES` and each task's ``value_range``) onto it and
the results map predictions back, so ``predictions.csv`` and an error in years are on the corpus's scale.
CCC is the same on either scale (it is invariant to one affine map of both sides).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Score:
    """One number a test reports: ``key`` in ``test_metrics.json`` / ``metrics.json`` / ``summary.json``
    (``summary.json`` adds ``_mean``/``_std``), its ``label`` in logs and tables, the values it can take
    ([``low``, ``high``]), its direction and how tables show it (``percent``: a fraction shown x 100)."""

    key: str
    label: str
    low: float
    high: float
    higher_is_better: bool = True
    percent: bool = True
    unit: str = "%"

    def check(self, value: object) -> str | None:
        """None if ``value`` is a valid score, else what it should be (``a number in [0, 1] (...), got 66.0``)."""
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if number and self.low <= value <= self.high:
            return None
        what = "a fraction, not percent" if self.percent else self.unit or "a CCC"
        return f"a number in [{self.low:g}, {self.high:g}] ({what}), got {value!r}"

    def text(self, value: float, std: float | None = None) -> str:
        """``66.1 %``, ``0.512``, ``7.30 years``; with ``std``: ``66.1 ± 1.2 %``."""
        scale, digits = (100, 1) if self.percent else (1, 3 if not self.unit else 2)
        spread = "" if std is None else f" ± {scale * std:.{digits}f}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{scale * value:.{digits}f}{spread}{unit}"


@dataclass(frozen=True)
class TaskSpec:
    """One task. ``kind`` ``classification``: a head of n classes, cross-entropy, int64 targets (-1 missing);
    ``regression``: a head of one value, ``loss`` ``ccc`` (1 - CCC over the batch) or ``mse``, float32 targets
    on [0, 1] (NaN missing), read from the manifest's ``column`` on the scale ``value_range`` (unless the
    corpus or ``data.value_ranges`` says otherwise). ``monitor``: the score validation logs as ``val/<monitor>``
    (segment-level for classes, utterance-level CCC or error for values)."""

    name: str
    kind: Literal["classification", "regression"]
    role: Literal["primary", "auxiliary"]
    loss: Literal["cross_entropy", "ccc", "mse"]
    scores: tuple[Score, ...]
    monitor: str  # the segment score validation logs as val/<monitor> (classification tasks)
    column: str | None = None
    value_range: tuple[float, float] | None = None
    description: str = ""

    @property
    def missing(self) -> float:
        """The target value of an utterance without a label for this task."""
        return -1 if self.kind == "classification" else math.nan


def _ccc(dim: str) -> Score:
    return Score(f"ccc_{dim}", f"CCC {dim}", -1.0, 1.0, percent=False, unit="")


def _dimension(name: str) -> TaskSpec:
    return TaskSpec(name, "regression", "primary", "ccc", (_ccc(name),), f"ccc_{name}", column=name,
                    description=f"{name} as a value (utterance-level CCC; MSP-Podcast challenge loss 1 - CCC)")


TASKS: dict[str, TaskSpec] = {
    spec.name: spec for spec in (
        TaskSpec("emotion", "classification", "primary", "cross_entropy",
                 (Score("wa", "WA", 0, 1), Score("ua", "UA", 0, 1), Score("macro_f1", "F1", 0, 1)), "seg_acc",
                 description="the emotion classes of data.task (paper 4.1)"),
        TaskSpec("gender", "classification", "auxiliary", "cross_entropy",
                 (Score("gender_acc", "gender", 0, 1),), "gender_acc", description="F / M (paper eq. 2)"),
        TaskSpec("speaker", "classification", "auxiliary", "cross_entropy",
                 (Score("speaker_acc", "speaker", 0, 1),), "speaker_acc",
                 description="the training speakers of both corpora (paper eq. 2)"),
        _dimension("activation"),
        _dimension("valence"),
        _dimension("dominance"),
        TaskSpec("age", "regression", "auxiliary", "mse",
                 (Score("age_mae", "age MAE", 0, math.inf, higher_is_better=False, percent=False, unit="years"),),
                 "age_mae", column="age", value_range=(0.0, 100.0),
                 description="the speaker's age in years (manifest column age, e.g. CREMA-D's demographics)"),
    )
}
DIMENSIONS = tuple(name for name, spec in TASKS.items() if spec.kind == "regression" and spec.role == "primary")
# The mean CCC over the dimensions a model predicts: its headline (and val/ccc_mean its auto monitor).
CCC_MEAN = Score("ccc_mean", "CCC mean", -1.0, 1.0, percent=False, unit="")
EER = Score("eer", "EER", 0, 1, higher_is_better=False)
# Every score a run may report, in the order logs, summaries and tables show them.
SCORES: dict[str, Score] = {score.key: score for score in (
    *TASKS["emotion"].scores, *(s for d in DIMENSIONS for s in TASKS[d].scores), CCC_MEAN,
    *(s for name, spec in TASKS.items() if spec.role == "auxiliary" for s in spec.scores), EER)}
# Scale of a value column per corpus (the corpora's own rating scales; docs/corpora.md).
DEFAULT_VALUE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "iemocap": {"activation": (1.0, 5.0), "valence": (1.0, 5.0), "dominance": (1.0, 5.0)},
    "msp_improv": {"activation": (1.0, 5.0), "valence": (1.0, 5.0), "dominance": (1.0, 5.0)},
    "msp_podcast": {"activation": (1.0, 7.0), "valence": (1.0, 7.0), "dominance": (1.0, 7.0)},
}


class TaskError(ValueError):
    """An unknown task, or a value without a scale; the message names the setting to change."""


def task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; expected one of {list(TASKS)}")
    return TASKS[name]


def check_tasks(tasks: Iterable[str], who: str = "model.tasks") -> list[str]:
    """``tasks`` as a list if it is a non-empty subset of `TASKS` without repeats, else TaskError."""
    tasks = list(tasks)
    if not tasks or len(set(tasks)) != len(tasks) or any(t not in TASKS for t in tasks):
        raise TaskError(f"{who} must be a non-empty subset of {list(TASKS)} without repeats, got {tasks}")
    return tasks


def regression_tasks(tasks: Iterable[str]) -> list[str]:
    return [t for t in tasks if TASKS[t].kind == "regression"]


def auto_monitor(tasks: Iterable[str]) -> str:
    """The validation key ``checkpoint.monitor: auto`` selects on: ``val/ua`` with the emotion task, else
    ``val/ccc_mean`` with a dimension, else the first task's own (``val/gender_acc``, ``val/loss_age``)."""
    tasks = list(tasks)
    if "emotion" in tasks:
        return "val/ua"
    if any(t in DIMENSIONS for t in tasks):
        return f"val/{CCC_MEAN.key}"
    spec = TASKS[tasks[0]]
    return f"val/{spec.monitor}" if spec.kind == "classification" else f"val/loss_{spec.name}"


def monitor_mode(monitor: str) -> str:
    """``max`` or ``min`` for a logged key (``checkpoint.mode: auto``): a loss, the EER or an error is lower
    the better; accuracies, UA and CCC higher."""
    key = monitor.split("/", 1)[-1]
    if key in SCORES:
        return "max" if SCORES[key].higher_is_better else "min"
    return "min" if key.startswith("loss") else "max"


def corpus_key(corpus: str) -> str:
    return corpus.strip().lower().replace("-", "_")


def value_range(task: str, corpus: str, overrides: dict[str, tuple[float, float]] | None = None
                ) -> tuple[float, float]:
    """(low, high) of ``task``'s value column for rows of ``corpus``: ``overrides`` (``data.value_ranges``),
    else the corpus's scale, else the task's own; TaskError when none is known or low >= high."""
    spec = task_spec(task)
    found = ((overrides or {}).get(task) or DEFAULT_VALUE_RANGES.get(corpus_key(corpus), {}).get(task)
             or spec.value_range)
    if found is None:
        raise TaskError(f"task {task!r}: no scale known for corpus {corpus!r}'s {spec.column} values; set "
                        f"data.value_ranges, e.g. {{{task}: [1, 5]}}")
    low, high = float(found[0]), float(found[1])
    if not low < high:
        raise TaskError(f"data.value_ranges[{task!r}] = {list(found)}: expected [low, high] with low < high")
    return low, high


def concordance_correlation(pred: Iterable[float], true: Iterable[float]) -> float:
    """Lin's concordance correlation coefficient of two equally long sequences (float64, population moments):
    2 cov(x, y) / (var x + var y + (mean x - mean y)^2); 1 = perfect agreement, 0 for constant equal values is
    undefined and raises ValueError, as do fewer than 2 values."""
    import numpy as np

    x, y = np.asarray(list(pred), dtype=np.float64), np.asarray(list(true), dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"concordance_correlation: needs two 1-D sequences of equal length >= 2, got shapes "
                         f"{x.shape} and {y.shape}")
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    denominator = x.var() + y.var() + (mx - my) ** 2
    if denominator == 0:
        raise ValueError("concordance_correlation: both sequences are one and the same constant; CCC is undefined")
    return float(2 * cov / denominator)
