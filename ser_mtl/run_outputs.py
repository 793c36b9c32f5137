"""What a test or predict run leaves in ``trainer.default_root_dir`` (`ResultWriter`, `PredictionWriter`).

``predictions.csv`` holds each test utterance's averaged segment posteriors, the numbers WA/UA come from,
so it reproduces the table exactly. ``test_metrics.json`` also has the auxiliary heads' utterance-level
``gender_acc`` and ``speaker_acc`` over the test utterances labelled for them: none (not 0) for unseen
test speakers; a model without emotion has no ``wa``/``ua``. A value task (``ser_mtl/tasks.py``) adds its
utterance-level scores on the corpus's scale (``ccc_<dim>`` per dimension, ``ccc_mean`` over the model's
dimensions, ``age_mae`` in years, with ``n_<task>_utterances``) and ``<task>_true``/``<task>_pred`` columns to
``predictions.csv``, one row per test utterance labelled for some task (empty cells where it has no label).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from ser_mtl.callbacks import StageTimed
from ser_mtl.io_utils import atomic_write_json, atomic_write_text
from ser_mtl.metrics import UtteranceAccuracy, UtteranceRegression, mean_per_utterance, score_predictions
from ser_mtl.runs.layout import PREDICTIONS, TEST_METRICS
from ser_mtl.tasks import CCC_MEAN, DIMENSIONS, TASKS, concordance_correlation


def format_table(wa: float, ua: float, n_utts: int, classes: list[str], confmat: np.ndarray) -> str:
    """A plain-text WA/UA + confusion-matrix table (percent)."""
    width = max(8, *(len(c) for c in classes)) + 1
    lines = [f"test utterances: {n_utts}", f"  WA {100 * wa:6.2f} %   UA {100 * ua:6.2f} %", "",
             "confusion (rows: true, cols: predicted)", " " * width + "".join(f"{c:>{width}}" for c in classes)]
    for name, row in zip(classes, confmat):
        lines.append(f"{name:>{width}}" + "".join(f"{int(v):>{width}}" for v in row))
    return "\n".join(lines)


def predictions_csv(utt_ids: list[str], speakers: list[str], labels: np.ndarray, probs: np.ndarray,
                    classes: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["utt_id", "speaker", "label", "pred"] + [f"p_{c}" for c in classes])
    for uid, spk, lab, pred, p in zip(utt_ids, speakers, labels, probs.argmax(axis=1), probs):
        writer.writerow([uid, spk, classes[int(lab)] if lab >= 0 else "", classes[int(pred)]]
                        + [f"{v:.6f}" for v in p])
    return buffer.getvalue()


def value_columns(utt_ids: list[str], speakers: list[str], values: dict[str, dict[str, tuple[float, float]]],
                  emotion_csv: str | None) -> str:
    """``predictions.csv`` with ``<task>_true``, ``<task>_pred`` columns per value task: ``values`` task ->
    utt_id -> (true, predicted) on the corpus's scale; ``emotion_csv`` (`predictions_csv`'s text) gives the
    emotion columns of its utterances. Rows: every utterance of ``utt_ids`` (sorted by the caller)."""
    emotion_rows, emotion_header = {}, []
    if emotion_csv is not None:
        reader = csv.reader(io.StringIO(emotion_csv))
        emotion_header = next(reader)[2:]  # label, pred, p_<class>...
        emotion_rows = {row[0]: row[2:] for row in reader}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["utt_id", "speaker", *emotion_header, *(f"{t}_{c}" for t in values for c in ("true", "pred"))])
    for uid, spk in zip(utt_ids, speakers):
        cells = emotion_rows.get(uid, [""] * len(emotion_header))
        for task_values in values.values():
            true, pred = task_values.get(uid, (None, None))
            cells += ["", ""] if true is None else [repr(true), f"{pred:.6f}"]
        writer.writerow([uid, spk, *cells])
    return buffer.getvalue()


def value_scores(tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], rows: dict[str, list],
                 scale) -> tuple[dict[str, Any], dict[str, dict[str, tuple[float, float]]]]:
    """Scores of each value task's utterance table (utt (U,), mean prediction (U,) on [0, 1], target (U,));
    ``rows[task]`` the utterances' manifest rows) on the corpus's scale (``scale(task, row)`` -> (low, high)):
    ``ccc_<dim>`` (Lin's CCC, float64; left out below 2 utterances or for constant values), ``ccc_mean`` when
    every dimension has one, ``age_mae`` (mean absolute error), ``n_<task>_utterances``. Also task -> utt_id
    -> (true, predicted) for ``predictions.csv``."""
    metrics: dict[str, Any] = {}
    values: dict[str, dict[str, tuple[float, float]]] = {}
    for task, (_, pred, _) in tables.items():
        spans = np.array([scale(task, r) for r in rows[task]], dtype=np.float64).reshape(-1, 2)  # (U, 2)
        true_v = np.array([getattr(r, TASKS[task].column) for r in rows[task]], dtype=np.float64)  # (U,) as written
        pred_v = spans[:, 0] + pred * (spans[:, 1] - spans[:, 0])  # (U,)
        values[task] = {r.utt_id: (float(t), float(p)) for r, t, p in zip(rows[task], true_v, pred_v)}
        metrics[f"n_{task}_utterances"] = len(true_v)
        if task in DIMENSIONS:
            try:
                metrics[f"ccc_{task}"] = concordance_correlation(pred_v, true_v)
            except ValueError:
                continue
        else:  # age: the error in the column's unit
            metrics[TASKS[task].scores[0].key] = float(np.mean(np.abs(pred_v - true_v)))
    dims = [t for t in tables if t in DIMENSIONS]
    if dims and all(f"ccc_{t}" in metrics for t in dims):
        metrics[CCC_MEAN.key] = float(np.mean([metrics[f"ccc_{t}"] for t in dims]))
    return metrics, values


def value_tables(pl_module: pl.LightningModule) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Utterance tables of the model's test ``value_metrics`` with a labelled segment; call on every rank."""
    tables = {task: _table(m) for task, m in getattr(pl_module, "value_metrics", {}).items()}
    return {task: table for task, table in tables.items() if table is not None}


def aux_accuracies(tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """``{task}_acc`` and ``n_{task}_utterances`` per task from its utterance table: utt (U,), averaged
    posteriors (U, C), labels (U,); accuracy = mean over utterances of [argmax == label] (float64)."""
    metrics: dict[str, Any] = {}
    for task, (utt, probs, labels) in tables.items():
        metrics[f"{task}_acc"] = float(np.mean(probs.argmax(axis=1) == labels))
        metrics[f"n_{task}_utterances"] = len(utt)
    return metrics


def aux_tables(pl_module: pl.LightningModule) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Utterance tables of the model's ``aux_test_metrics`` with a labelled segment; call on every rank."""
    tables = {task: _table(m) for task, m in sorted(getattr(pl_module, "aux_test_metrics", {}).items())}
    return {task: table for task, table in tables.items() if table is not None}


def test_metrics(utt: np.ndarray, probs: np.ndarray, labels: np.ndarray, classes: list[str],
                 eer: float | None = None) -> dict[str, Any]:
    """``test_metrics.json``'s content from the utterance table: utt (U,), averaged posteriors (U, C),
    labels (U,). WA, UA and macro-F1 come from the confusion matrix by the function the logged metric uses."""
    scores = score_predictions(labels, probs.argmax(axis=1), len(classes))  # WA, UA, macro-F1, (C, C) confmat
    metrics: dict[str, Any] = {"wa": scores["wa"], "ua": scores["ua"], "macro_f1": scores["macro_f1"],
                               "n_utterances": len(utt), "classes": classes, "confmat": scores["confmat"]}
    if eer is not None:
        metrics["eer"] = float(eer)
    return metrics


class ResultWriter(StageTimed):
    """After ``trainer.test``: print the WA/UA table and write ``test_metrics.json`` and ``predictions.csv``.

    Under DDP every rank gathers the tables and rank 0 writes. The last result stays in ``self.metrics``
    (None before a test, or when the test produced no score). Its ``cost`` holds ``test_seconds`` (the start
    of set-up to the end of the test) and ``startup_seconds`` (launch to set-up), measured as a fit's are
    (``ser_mtl/stage_clock.py``).

    Args:
        print_table: print the table and the confusion matrix after the test.
    """

    def __init__(self, print_table: bool = True) -> None:
        super().__init__()
        self.print_table = print_table
        self.metrics: dict[str, Any] | None = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metrics = None

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        emotion = _table(getattr(pl_module, "test_metric", None))
        aux = aux_accuracies(aux_tables(pl_module))
        eer = _verification_eer(trainer)
        tables = value_tables(pl_module)
        if emotion is None and not aux and eer is None and not tables:
            return
        datamodule = trainer.datamodule
        classes = list(datamodule.class_names)
        value_rows = {task: [datamodule.utterances[int(u)] for u in table[0]] for task, table in tables.items()}
        scores, values = value_scores(tables, value_rows, datamodule.value_scale)
        self.metrics = {**({} if emotion is None else test_metrics(*emotion, classes)), **scores,
                        **({} if eer is None else {"eer": float(eer)}), **aux,
                        "cost": {"test_seconds": self.clock.seconds(), "startup_seconds": self.clock.startup_seconds}}
        if not trainer.is_global_zero:
            return
        run_dir = Path(trainer.default_root_dir)
        text = None
        if emotion is not None:
            utt, probs, labels = emotion
            rows = [datamodule.utterances[int(u)] for u in utt]
            text = predictions_csv([r.utt_id for r in rows], [r.speaker for r in rows], labels, probs, classes)
        if tables:
            ids = sorted({int(u) for table in [*tables.values(), *([emotion] if emotion else [])] for u in table[0]})
            rows = [datamodule.utterances[u] for u in ids]
            text = value_columns([r.utt_id for r in rows], [r.speaker for r in rows], values, text)
        if text is not None:
            atomic_write_text(run_dir / PREDICTIONS, text)
        atomic_write_json(run_dir / TEST_METRICS, self.metrics)
        if self.print_table:
            if emotion is not None:
                print(format_table(self.metrics["wa"], self.metrics["ua"], len(emotion[0]), classes,
                                   np.asarray(self.metrics["confmat"])))
            for task in ("gender", "speaker"):
                if f"{task}_acc" in aux:
                    print(f"  {task} accuracy {100 * aux[f'{task}_acc']:6.2f} % over "
                          f"{aux[f'n_{task}_utterances']} test utterances")
            for task in tables:
                score = TASKS[task].scores[0]
                shown = score.text(scores[score.key]) if score.key in scores else "undefined (constant values)"
                print(f"  {score.label} {shown} over {scores[f'n_{task}_utterances']} test utterances")


def _table(metric: UtteranceAccuracy | UtteranceRegression | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(utt (U,), averaged posteriors (U, C) or values (U,), labels (U,)) of a test metric, or None."""
    if metric is None or not metric.update_called:
        return None
    try:
        return tuple(t.cpu().numpy() for t in metric.utterance_table())
    except RuntimeError:  # no labelled test segment (e.g. unseen test speakers): no accuracy, not 0
        return None


def _verification_eer(trainer: pl.Trainer) -> float | None:
    """The EER of this test: the verification callback's own float64 result, else the logged ``test/eer``."""
    from ser_mtl.verification import SpeakerVerification

    for callback in trainer.callbacks:
        if isinstance(callback, SpeakerVerification) and callback.result is not None:
            return float(callback.result["eer"])
    eer = trainer.callback_metrics.get("test/eer")  # logged as float32
    return None if eer is None else float(eer)


class PredictionWriter(pl.Callback):
    """After ``trainer.predict`` over the test split: write ``predict.csv`` (``predictions.csv``'s columns);
    under DDP each rank writes its own shard's ``predict_rank{r}.csv``."""

    def __init__(self) -> None:
        self._utt, self._probs = [], []  # (B,), (B, C) per batch
        self.path: Path | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._utt, self._probs, self.path = [], [], None

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._utt.append(outputs["utt"].cpu())  # (B,)
        self._probs.append(outputs["probs"].float().cpu())  # (B, C)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._utt:
            return
        datamodule = trainer.datamodule
        ids, mean, _ = mean_per_utterance(torch.cat(self._probs), torch.cat(self._utt))  # (U,), (U, C)
        rows = [datamodule.utterances[int(u)] for u in ids]
        labels = np.array([datamodule.label_scheme.encode(r) for r in rows])
        self.path = Path(trainer.default_root_dir) / (f"predict_rank{trainer.global_rank}.csv"
                                                      if trainer.world_size > 1 else "predict.csv")
        atomic_write_text(self.path, predictions_csv([r.utt_id for r in rows], [r.speaker for r in rows], labels,
                                                     mean.numpy(), list(datamodule.class_names)))
        print(f"utterance-level predictions of the test split -> {self.path}")
