"""Confusion counts of a cross-validation from its runs' ``predictions.csv`` (``ser_mtl/run_outputs.py``
writes them), for reports of runs whose ``metrics.json`` carries no ``confmat``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ser_mtl.runs.layout import PREDICTIONS


def confusion_from_predictions(root: Path, run_dirs: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """Confusion counts (C, C), rows true, summed over ``root/<run>/predictions.csv`` of runs whose class
    columns agree with the first; None when no run has a labelled prediction."""
    classes: list[str] = []
    pairs: list[tuple[str, str]] = []
    for name in run_dirs:
        path = root / name / PREDICTIONS
        if not name or not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            names = [c[2:] for c in reader.fieldnames or [] if c.startswith("p_")]
            classes = classes or names
            if names != classes or not {"label", "pred"} <= set(reader.fieldnames or []):
                continue
            pairs += [(row["label"], row["pred"]) for row in reader if row["label"]]
    if not classes or not pairs:
        return None
    total = np.zeros((len(classes), len(classes)), dtype=np.int64)  # (C, C)
    for label, pred in pairs:
        if label in classes and pred in classes:
            total[classes.index(label), classes.index(pred)] += 1
    return total, classes
