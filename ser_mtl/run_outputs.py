"""What ``ser-mtl test`` leaves in the run directory: the WA/UA table, metrics JSON, predictions CSV.

``predictions.csv`` has one row per test utterance, ``utt_id,speaker,label,pred`` and one
``p_<class>`` column per class: the segment posteriors averaged over the utterance, the same
numbers WA/UA are computed from, so the file reproduces the printed table exactly.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from ser_mtl.io_utils import atomic_write_json, atomic_write_text
from ser_mtl.metrics import mean_per_utterance, wa_ua


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
    preds = probs.argmax(axis=1)
    for uid, spk, lab, pred, p in zip(utt_ids, speakers, labels, preds, probs):
        writer.writerow([uid, spk, classes[int(lab)] if lab >= 0 else "", classes[int(pred)]]
                        + [f"{v:.6f}" for v in p])
    return buffer.getvalue()


def write_test_outputs(trainer, model, datamodule) -> dict | None:
    """Write ``test_metrics.json`` and ``predictions.csv`` to the run directory (rank 0 only)."""
    table = getattr(model, "test_table", None)
    if table is None:
        return None
    utt, probs, labels = (np.asarray(t.cpu() if hasattr(t, "cpu") else t) for t in table)
    classes = list(datamodule.class_names)
    confmat = np.asarray(model.test_confmat.cpu() if hasattr(model.test_confmat, "cpu") else model.test_confmat)
    wa, ua = (float(v) for v in wa_ua(torch.as_tensor(confmat)))  # the numbers the metric logged
    metrics = {"wa": wa, "ua": ua, "n_utterances": len(utt), "classes": classes,
               "confmat": confmat.astype(int).tolist()}
    eer = getattr(model, "test_eer", None)
    if eer is not None:
        metrics["eer"] = float(eer)
    metrics["table"] = format_table(wa, ua, len(utt), classes, confmat)
    if trainer.is_global_zero:
        run_dir = Path(trainer.default_root_dir)
        rows = [datamodule.utterances[int(u)] for u in utt]
        atomic_write_text(run_dir / "predictions.csv",
                          predictions_csv([r.utt_id for r in rows], [r.speaker for r in rows], labels, probs, classes))
        atomic_write_json(run_dir / "test_metrics.json", {k: v for k, v in metrics.items() if k != "table"})
    return metrics


def write_predict_outputs(trainer, predictions: list[dict], datamodule) -> Path | None:
    """``ser-mtl predict``: average each utterance's segment posteriors and write ``predict.csv``
    (same columns as ``predictions.csv``, which belongs to ``ser-mtl test``).

    Each process holds only its own shard's predictions, so under DDP this writes rank 0's share and
    says so; ``ser-mtl test`` gathers across ranks.
    """
    if not predictions:
        return None
    utt = torch.cat([p["utt"].cpu() for p in predictions])  # (S,)
    probs = torch.cat([p["probs"].float().cpu() for p in predictions])  # (S, C)
    ids, mean, _ = mean_per_utterance(probs, utt)  # (U,), (U, C)
    mean = mean.numpy()
    rows = [datamodule.utterances[int(u)] for u in ids]
    labels = np.array([datamodule.label_scheme.encode(r) for r in rows])
    out = Path(trainer.default_root_dir) / (f"predict_rank{trainer.global_rank}.csv" if trainer.world_size > 1
                                            else "predict.csv")
    atomic_write_text(out, predictions_csv([r.utt_id for r in rows], [r.speaker for r in rows], labels, mean,
                                           list(datamodule.class_names)))
    return out
