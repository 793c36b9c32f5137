"""Validation and test of packed runs: utterance-level WA/UA per run (`ser_mtl.metrics.UtteranceAccuracy`).

Each run evaluates its own fold's loader. The K loaders are walked side by side; a run whose loader
is exhausted (or whose batch is shorter) gets zero padding that is scored by nobody: in eval mode
BatchNorm uses its running statistics, so a padded sample changes no other sample's output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import zip_longest

import torch

from ser_mtl.metrics import UtteranceAccuracy
from ser_mtl.models.packed import PackedAAE


def stack_batches(batches: Sequence[Mapping[str, torch.Tensor] | None], keys: Sequence[str],
                  device: torch.device) -> tuple[dict[str, torch.Tensor], list[int]]:
    """K per-run batches (None = that run has none) -> one packed batch padded to the largest B
    (x zeros, labels and ``utt`` -1) and each run's real batch size."""
    sizes = [0 if b is None else int(b["x"].shape[0]) for b in batches]
    ref = next(b for b in batches if b is not None)
    width = max(sizes)
    out = {}
    for key in keys:
        fill = 0.0 if key == "x" else -1
        rows = []
        for b, n in zip(batches, sizes):
            like = ref[key]
            row = torch.full((width, *like.shape[1:]), fill, dtype=like.dtype)
            if n:
                row[:n] = b[key]
            rows.append(row)
        out[key] = torch.stack(rows).to(device)  # (K, B, ...)
    return out, sizes


def evaluate_pack(pack: PackedAAE, loaders: Sequence[Iterable[Mapping[str, torch.Tensor]]],
                  num_emotions: int) -> list[dict[str, float] | None]:
    """Each run's utterance WA/UA on its own loader, ``{"wa", "ua"}`` (None for a run without any
    emotion-labelled segment). Batches: ``x`` (B, 1, F, T), ``emotion`` (B,), ``utt`` (B,)."""
    if len(loaders) != pack.k:
        raise ValueError(f"evaluate_pack: {len(loaders)} loaders for a pack of {pack.k} runs")
    metrics = [UtteranceAccuracy(num_emotions) for _ in range(pack.k)]
    seen = [0] * pack.k
    for batches in zip_longest(*loaders):
        batch, sizes = stack_batches(batches, ("x", "emotion", "utt"), pack.device)
        probs = pack.forward_eval(batch["x"])["emotion"].softmax(-1).cpu()  # (K, B, C)
        for k, n in enumerate(sizes):
            if n:
                labels = batch["emotion"][k, :n].cpu()
                metrics[k].update(probs[k, :n], batch["utt"][k, :n].cpu(), labels)
                seen[k] += int((labels >= 0).sum())
    results: list[dict[str, float] | None] = []
    for metric, n in zip(metrics, seen):
        if n == 0:
            results.append(None)
            continue
        r = metric.compute()
        results.append({"wa": float(r["wa"]), "ua": float(r["ua"])})
    return results
