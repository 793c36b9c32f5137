"""Utterance-level scores from segment outputs (emotion WA, UA, macro-F1; a value's CCC) and the speaker-verification EER.

As in the paper (4.2) an utterance's segment posteriors are averaged: `UtteranceAccuracy` keeps every
labelled segment's and averages only in `compute()`; its list states are ``cat``-reduced across DDP
ranks, so an utterance scored on several ranks is still averaged over all its segments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_curve
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ser_mtl.tasks import concordance_correlation


def mean_per_utterance(values: torch.Tensor, utt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Average segment rows per utterance: values (N, D), utt (N,) -> ids (U,) sorted, means (U, D), inverse (N,)."""
    ids, inverse = torch.unique(utt, sorted=True, return_inverse=True)  # (U,), (N,)
    sums = torch.zeros(len(ids), values.shape[1], dtype=values.dtype, device=values.device)
    sums.index_add_(0, inverse, values)
    counts = torch.bincount(inverse, minlength=len(ids)).to(values.dtype)  # (U,)
    return ids, sums / counts[:, None], inverse


def confusion_scores(confmat: np.ndarray | torch.Tensor) -> dict[str, float]:
    """The one scoring function of the package (the logged metric, ``test_metrics.json``, the baselines):
    WA, UA and macro-F1 (float64) from a (C, C) confusion matrix, rows true, columns predicted.

    WA = trace / total (micro accuracy); UA = mean recall over the classes that occur in the labels
    (scikit-learn's ``balanced_accuracy_score``); macro-F1 = mean of 2 TP / (2 TP + FP + FN) over the classes
    that occur in the labels or the predictions, 0 for a class never predicted correctly (scikit-learn's
    ``f1_score(average="macro", zero_division=0)``)."""
    cm = confmat.detach().cpu().numpy() if isinstance(confmat, torch.Tensor) else np.asarray(confmat)
    cm = cm.astype(np.float64)  # (C, C)
    support, predicted, tp = cm.sum(axis=1), cm.sum(axis=0), cm.diagonal()  # (C,) each
    if support.sum() == 0:
        raise ValueError("confusion_scores: an empty confusion matrix (no labelled utterance)")
    present, seen = support > 0, (support + predicted) > 0
    f1 = 2 * tp[seen] / (2 * tp[seen] + (predicted - tp)[seen] + (support - tp)[seen])
    return {"wa": float(tp.sum() / support.sum()), "ua": float(np.mean(tp[present] / support[present])),
            "macro_f1": float(np.mean(f1))}


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows true labels (U,), columns predictions (U,), both in [0, C)."""
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    return np.bincount(labels * num_classes + preds, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def score_predictions(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict:
    """``confusion_scores`` of utterance labels (U,) and predictions (U,), with the confusion matrix as lists."""
    confmat = confusion_matrix(labels, preds, num_classes)
    return {**confusion_scores(confmat), "confmat": confmat.astype(int).tolist()}


class UtteranceAccuracy(Metric):
    """Weighted and unweighted accuracy over utterances, from averaged segment posteriors.

    For utterance u with segments s in S_u and segment posteriors p_s (C,):

        P_u = (1 / |S_u|) * sum_{s in S_u} p_s          (averaged posterior, paper 4.2)
        yhat_u = argmax_c P_u[c]                           (ties: lowest class index)
        WA = (1 / U) * sum_u [yhat_u == y_u]                (micro accuracy over utterances)
        UA = (1 / |K|) * sum_{c in K} recall_c,  recall_c = |{u: y_u = c, yhat_u = c}| / |{u: y_u = c}|
             with K the classes that occur in the labels   (macro recall, = balanced accuracy)
        macro-F1 = mean over classes in the labels or predictions of 2 TP_c / (2 TP_c + FP_c + FN_c)
        confmat[i, j] = |{u: y_u = i, yhat_u = j}|          (rows true, columns predicted)

    Segments with label -1 are ignored; an utterance's segments must share a label. The same as
    scikit-learn's `accuracy_score`, `balanced_accuracy_score`, `f1_score(average="macro")` and
    `confusion_matrix` on (y_u, yhat_u) (`confusion_scores`).

    Args:
        num_classes: C, the width of the posteriors and the range of the labels.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"UtteranceAccuracy: num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.add_state("probs", default=[], dist_reduce_fx="cat")  # list of (B', C) float32
        self.add_state("utt", default=[], dist_reduce_fx="cat")  # list of (B',) int64
        self.add_state("labels", default=[], dist_reduce_fx="cat")  # list of (B',) int64

    def update(self, probs: torch.Tensor, utt: torch.Tensor, labels: torch.Tensor) -> None:
        """Add segment posteriors `probs` (B, C) of utterances `utt` (B,) with `labels` (B,), -1 = none."""
        if probs.ndim != 2 or probs.shape[1] != self.num_classes:
            raise ValueError(f"UtteranceAccuracy.update: probs must be (B, {self.num_classes}), "
                             f"got {tuple(probs.shape)}")
        if utt.shape != (probs.shape[0],) or labels.shape != (probs.shape[0],):
            raise ValueError(f"UtteranceAccuracy.update: utt and labels must be ({probs.shape[0]},), "
                             f"got {tuple(utt.shape)} and {tuple(labels.shape)}")
        keep = labels != -1  # (B,)
        bad = labels[keep & ((labels < 0) | (labels >= self.num_classes))]
        if bad.numel():
            raise ValueError(f"UtteranceAccuracy.update: labels must be -1 or in [0, {self.num_classes}), "
                             f"got {bad.unique().tolist()}")
        self.probs.append(probs[keep].detach().float())
        self.utt.append(utt[keep].detach().long())
        self.labels.append(labels[keep].detach().long())

    def _utterances(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(utt (U,), mean posterior (U, C), label (U,)) of the states held now, sorted by utt."""
        # After a DDP sync the list states have been concatenated into tensors.
        seen = sum(len(p) for p in self.probs) if isinstance(self.probs, list) else len(self.probs)
        if seen == 0:
            raise RuntimeError("UtteranceAccuracy: no labelled segment was seen (all labels -1 or no "
                               "update() call); check that the evaluated split has labels for this task")
        probs, utt, labels = map(dim_zero_cat, (self.probs, self.utt, self.labels))  # (N, C), (N,), (N,)
        uniq, mean_probs, inverse = mean_per_utterance(probs, utt)  # (U,), (U, C), (N,)
        n_utt = uniq.numel()
        lo = labels.new_full((n_utt,), self.num_classes).scatter_reduce(0, inverse, labels, reduce="amin")
        hi = labels.new_full((n_utt,), -1).scatter_reduce(0, inverse, labels, reduce="amax")
        mixed = lo != hi
        if mixed.any():
            first = int(mixed.nonzero()[0, 0])
            raise ValueError(f"UtteranceAccuracy: utterance {int(uniq[first])} has segments with different "
                             f"labels ({int(lo[first])} and {int(hi[first])}); {int(mixed.sum())} such "
                             "utterance(s) in all")
        return uniq, mean_probs, lo

    def compute(self) -> dict[str, torch.Tensor]:
        """{"wa", "ua", "macro_f1": scalars, "confmat": (C, C) int64} over utterances (`confusion_scores`)."""
        _, mean_probs, labels = self._utterances()
        preds = mean_probs.argmax(dim=1)  # (U,)
        confmat = torch.bincount(labels * self.num_classes + preds, minlength=self.num_classes ** 2)
        confmat = confmat.reshape(self.num_classes, self.num_classes)  # (C, C) rows true
        scores = {key: torch.tensor(value, dtype=torch.float32) for key, value in confusion_scores(confmat).items()}
        return {**scores, "confmat": confmat}

    def utterance_table(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(utt (U,) int64, averaged posteriors (U, C), labels (U,)) sorted by utt, gathered over ranks."""
        with self.sync_context(should_sync=self.sync_on_compute and not self._is_synced, should_unsync=True):
            return self._utterances()


class UtteranceRegression(Metric):
    """Utterance-level values of a regression task: an utterance's prediction is the mean of its segments'
    (as posteriors are averaged, paper 4.2); `compute` gives Lin's CCC over the utterances. States are
    ``cat``-reduced across DDP ranks; segments whose target is NaN are ignored."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")  # list of (B',) float32
        self.add_state("utt", default=[], dist_reduce_fx="cat")  # list of (B',) int64
        self.add_state("targets", default=[], dist_reduce_fx="cat")  # list of (B',) float32

    def update(self, preds: torch.Tensor, utt: torch.Tensor, targets: torch.Tensor) -> None:
        """Add segment predictions ``preds`` (B,) of utterances ``utt`` (B,) with ``targets`` (B,), NaN = none."""
        if preds.ndim != 1 or utt.shape != preds.shape or targets.shape != preds.shape:
            raise ValueError(f"UtteranceRegression.update: preds, utt and targets must be (B,), got "
                             f"{tuple(preds.shape)}, {tuple(utt.shape)} and {tuple(targets.shape)}")
        keep = ~torch.isnan(targets)  # (B,)
        self.preds.append(preds[keep].detach().float())
        self.utt.append(utt[keep].detach().long())
        self.targets.append(targets[keep].detach().float())

    def _utterances(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seen = sum(len(p) for p in self.preds) if isinstance(self.preds, list) else len(self.preds)
        if seen == 0:
            raise RuntimeError("UtteranceRegression: no labelled segment was seen (all targets NaN or no "
                               "update() call); check that the evaluated split has values for this task")
        preds, utt, targets = map(dim_zero_cat, (self.preds, self.utt, self.targets))  # (N,) each
        ids, mean_pred, _ = mean_per_utterance(preds[:, None].double(), utt)  # (U,), (U, 1)
        _, mean_target, _ = mean_per_utterance(targets[:, None].double(), utt)  # one value per utterance
        return ids, mean_pred[:, 0], mean_target[:, 0]

    def compute(self) -> torch.Tensor:
        """Lin's CCC over utterances (`ser_mtl.tasks.concordance_correlation`); NaN for fewer than 2 utterances
        or constant values."""
        _, pred, target = self._utterances()
        try:
            return torch.tensor(concordance_correlation(pred.cpu().numpy(), target.cpu().numpy()))
        except ValueError:
            return torch.tensor(float("nan"))

    def utterance_table(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(utt (U,) int64, mean prediction (U,), target (U,)) float64, sorted by utt, gathered over ranks."""
        with self.sync_context(should_sync=self.sync_on_compute and not self._is_synced, should_unsync=True):
            return self._utterances()


def _as_numpy(values: np.ndarray | torch.Tensor | Sequence[float], name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"equal_error_rate: {name} must be 1-D, got shape {array.shape}")
    return array


def equal_error_rate(scores: np.ndarray | torch.Tensor | Sequence[float],
                     labels: np.ndarray | torch.Tensor | Sequence[int]) -> float:
    """EER in [0, 1] of verification trials: `scores` (N,) higher = more target-like, `labels` (N,) 1 = target.
    It is where FAR = fpr and FRR = 1 - tpr along scikit-learn's ROC meet, interpolated linearly between the
    two ROC points where FRR - FAR changes sign; 0 for perfect separation."""
    score = _as_numpy(scores, "scores")
    label = _as_numpy(labels, "labels")
    if score.shape != label.shape:
        raise ValueError(f"equal_error_rate: scores {score.shape} and labels {label.shape} differ in shape")
    if not np.all(np.isfinite(score)):
        raise ValueError(f"equal_error_rate: {int((~np.isfinite(score)).sum())} score(s) are not finite")
    if not np.all((label == 0) | (label == 1)):
        raise ValueError(f"equal_error_rate: labels must be 0 or 1, got {sorted(set(label.tolist()))[:5]}")
    if label.min() == label.max():
        raise ValueError("equal_error_rate: needs both target (1) and non-target (0) trials, got only "
                         f"label {int(label[0]) if label.size else 'none'} ({label.size} trials)")
    fpr, tpr, _ = roc_curve(label.astype(np.int64), score, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # FRR - FAR: starts at 1 (fpr 0, fnr 1), ends at -1, never increases
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    frac = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + frac * (fpr[i] - fpr[i - 1]))
