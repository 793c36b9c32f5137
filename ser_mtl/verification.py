"""Speaker verification with d-vectors (paper section 5), scored as an equal error rate.

The speaker head's last hidden layer is the d-vector (Variani et al.), averaged over an utterance's segments.
Each speaker is enrolled with the mean of the unit-length d-vectors of ``n_enrol`` seeded-random utterances
(paper: 20); every other utterance is scored by cosine against every enrolled speaker. The speakers, none seen
in training, are LibriSpeech test-clean's and the emotion corpus's test speakers; with LibriSpeech as
primary corpus (paper Figure 4d) ``data.verification_subset`` alone (`primary_verification_set`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader

from ser_mtl.metrics import equal_error_rate, mean_per_utterance


def utterance_embeddings(segment_vectors: torch.Tensor, utt: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean d-vector per utterance: (S, H) segments + (S,) utterance ids -> ids (U,), vectors (U, H)."""
    ids, means, _ = mean_per_utterance(segment_vectors.double(), utt)  # (U,), (U, H)
    return ids.numpy(), means.numpy()


def verification_trials(vectors: np.ndarray, speakers: list[str], n_enrol: int = 20,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cosine scores (N,), labels (N,) of every test utterance against every enrolled speaker, and the
    enrolled speakers; one with at most ``n_enrol`` utterances is left out with a warning."""
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (U, H)
    speakers = np.asarray(speakers)
    rng = np.random.default_rng(seed)
    models, test_idx, enrolled = [], [], []
    for spk in sorted(set(speakers.tolist())):
        idx = np.flatnonzero(speakers == spk)
        if len(idx) <= n_enrol:
            warnings.warn(f"speaker verification: speaker {spk!r} has {len(idx)} utterances, needs more than "
                          f"{n_enrol} (enrolment + test); left out", stacklevel=2)
            continue
        idx = rng.permutation(idx)
        model = vectors[idx[:n_enrol]].mean(axis=0)
        models.append(model / max(np.linalg.norm(model), 1e-12))
        test_idx.append(idx[n_enrol:])
        enrolled.append(spk)
    if len(enrolled) < 2:
        raise ValueError(f"speaker verification needs at least 2 speakers with more than {n_enrol} utterances, "
                         f"got {len(enrolled)}")
    models = np.stack(models)  # (K, H)
    tests = np.concatenate(test_idx)  # (M,)
    scores = vectors[tests] @ models.T  # (M, K) cosine
    labels = (speakers[tests][:, None] == np.asarray(enrolled)[None, :]).astype(int)  # (M, K)
    return scores.ravel(), labels.ravel(), enrolled


def speaker_verification_eer(segment_vectors: torch.Tensor, utt: torch.Tensor, speaker_of: dict[int, str],
                             n_enrol: int = 20, seed: int = 0) -> dict:
    """EER (fraction) and trial counts from segment d-vectors; ``speaker_of`` maps utterance id -> speaker."""
    ids, vectors = utterance_embeddings(segment_vectors, utt)
    scores, labels, enrolled = verification_trials(vectors, [speaker_of[int(i)] for i in ids], n_enrol, seed)
    return {"eer": equal_error_rate(scores, labels), "n_trials": len(labels),
            "n_target": int(labels.sum()), "n_speakers": len(enrolled)}


def primary_verification_set(datamodule) -> tuple[DataLoader, dict[int, str]] | None:
    """(loader of the segments, utterance id -> speaker) of ``data.root``/``data.verification_subset`` for a
    LibriSpeech-primary datamodule (ids after ``datamodule.utterances``); None where that does not apply."""
    from ser_mtl.data.manifest_cache import cached_manifest
    from ser_mtl.data.store import FeatureStore

    hp = datamodule.hparams
    subset = hp.get("verification_subset")
    if hp.get("corpus") != "librispeech" or not subset or hp.get("subset") == subset:
        return None
    if not (Path(hp.root) / subset).is_dir():
        rank_zero_info(f"speaker verification skipped: no {subset!r} folder in data.root {hp.root}")
        return None
    rows = cached_manifest(hp.corpus, hp.root, hp.cache_dir, subset)
    store = FeatureStore(rows, hp.root, datamodule.features, hp.cache_dir).build(num_workers=hp.num_workers,
                                                                               device=hp.feature_device)
    offset = len(datamodule.utterances)
    dataset = datamodule.make_dataset(store, rows, range(len(rows)), offset, hp.eval_hop or hp.segment_hop)
    loader = DataLoader(dataset, batch_size=hp.batch_size, shuffle=False, num_workers=hp.num_workers)
    return loader, {offset + i: row.speaker for i, row in enumerate(rows)}


def run_speaker_verification(model, datamodule) -> dict | None:
    """Embed the datamodule's verification utterances with ``model`` and score them; None (said where not
    obvious) without a speaker task, verification utterances, or enough speakers to enrol."""
    if "speaker" not in getattr(model, "tasks", []):
        return None
    loader = datamodule.verification_dataloader()
    speaker_of = {i: row.speaker for i, row in enumerate(datamodule.utterances)}
    if loader is None:
        primary = primary_verification_set(datamodule)
        if primary is None:
            return None
        loader, speaker_of = primary
    was_training = model.training
    model.eval()
    vectors, utts = [], []
    with torch.no_grad():
        for batch in loader:
            vectors.append(model.embed(batch["x"].to(model.device)).float().cpu())  # (B, H)
            utts.append(batch["utt"])
    model.train(was_training)
    try:
        return speaker_verification_eer(torch.cat(vectors), torch.cat(utts), speaker_of,
                                        datamodule.hparams.verification_enrol, datamodule.hparams.seed)
    except ValueError as err:
        rank_zero_info(f"speaker verification skipped: {err}")
        return None


class SpeakerVerification(pl.Callback):
    """At the end of each test epoch: speaker verification with the model's d-vectors, logged as ``test/eer``.

    Every DDP rank scores the same (unsharded) trials, so the EER is the same on every rank. The last
    result (``eer``, ``n_trials``, ``n_target``, ``n_speakers``) stays in ``self.result``."""

    def __init__(self) -> None:
        self.result: dict | None = None

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.result = None
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "verification_dataloader"):
            self.result = run_speaker_verification(pl_module, datamodule)
        if (result := self.result) is not None:
            pl_module.log("test/eer", float(result["eer"]))
            rank_zero_info(f"speaker verification: EER {100 * result['eer']:.2f} % over {result['n_trials']} "
                           f"trials ({result['n_speakers']} enrolled speakers)")
