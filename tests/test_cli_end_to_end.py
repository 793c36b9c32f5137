"""fit -> test -> classify through the real `ser-mtl` CLI on a tiny synthetic corpus (slow)."""

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from ser_mtl.checkpoint_io import read_checkpoint
from ser_mtl.cli import main
from ser_mtl.stage_clock import LAUNCHED_VARIABLE

pytestmark = pytest.mark.slow
CLASSES = ["angry", "happy", "neutral", "sad"]


def _common(corpus: Path, run: Path) -> list[str]:
    return ["--config", "configs/demo.yaml",
            "--data.root", str(corpus / "IEMOCAP_full_release"), "--data.aux_root", str(corpus / "LibriSpeech"),
            "--data.cache_dir", str(run.parent / "cache"), "--data.segment_frames", "64",
            "--data.segment_hop", "32", "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]",
            "--trainer.default_root_dir", str(run),
            "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", str(run)]


def test_fit_test_classify(corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv(LAUNCHED_VARIABLE, repr(time.time() - 5.0))  # as if a runner launched it 5 s ago
    main(["fit", *_common(corpus, run), "--trainer.max_epochs", "2"])
    ckpts = run / "checkpoints"
    assert (ckpts / "best.ckpt").exists() and (ckpts / "last.ckpt").exists()
    # the stage's seconds run from set-up (data, model, trainer built) to its end; start-up is given apart
    cost = json.loads((run / "fit_record.json").read_text())["cost"]
    assert 5.0 <= cost["startup_seconds"] < 60 and cost["fit_seconds"] > cost["epoch_seconds"] > 0
    assert LAUNCHED_VARIABLE not in os.environ  # consumed: a later stage in this process measures its own

    main(["test", *_common(corpus, run), "--ckpt_path", str(ckpts / "best.ckpt")])
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["cost"]["test_seconds"] > 0 and 0 <= metrics["cost"]["startup_seconds"] < 5.0
    with open(run / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["n_utterances"] > 0
    assert list(rows[0]) == ["utt_id", "speaker", "label", "pred"] + [f"p_{c}" for c in CLASSES]
    labels = [r["label"] for r in rows]
    preds = [r["pred"] for r in rows]
    # the file reproduces the printed numbers
    assert metrics["wa"] == pytest.approx(accuracy_score(labels, preds))
    assert metrics["ua"] == pytest.approx(balanced_accuracy_score(labels, preds))
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert [CLASSES[i] for i in probs.argmax(1)] == preds
    assert {r["speaker"] for r in rows} == {"Ses01_F", "Ses01_M"}  # loso_session fold 0 tests session 1

    # LightningCLI predict over the test split: the same utterance posteriors as test
    main(["predict", *_common(corpus, run), "--ckpt_path", str(ckpts / "best.ckpt")])
    with open(run / "predict.csv") as handle:
        predicted = {r["utt_id"]: r for r in csv.DictReader(handle)}
    assert set(predicted) == {r["utt_id"] for r in rows}
    for r in rows:
        assert [float(predicted[r["utt_id"]][f"p_{c}"]) for c in CLASSES] == pytest.approx(
            [float(r[f"p_{c}"]) for c in CLASSES], abs=1e-5)

    # the trained model on raw audio files, preprocessing taken from the checkpoint
    wav_dir = corpus / "IEMOCAP_full_release" / "Session1" / "sentences" / "wav"
    out = tmp_path / "classified.csv"
    main(["classify", "--ckpt", str(ckpts / "best.ckpt"), "--inputs", str(wav_dir), "--out", str(out)])
    with open(out) as handle:
        classified = {Path(r["path"]).stem: r for r in csv.DictReader(handle)}
    assert len(classified) == len(list(wav_dir.rglob("*.wav")))
    # same utterance, same preprocessing, same model -> the test run's posterior
    for r in rows[:5]:
        got = np.array([float(classified[r["utt_id"]][f"p_{c}"]) for c in CLASSES])
        want = np.array([float(r[f"p_{c}"]) for c in CLASSES])
        np.testing.assert_allclose(got, want, atol=2e-6)  # one front-end: only the CSVs' 6 decimals differ


def test_a_model_without_emotion_keeps_its_best_gender_accuracy(corpus, tmp_path):
    """tasks [gender] log no val/ua: the automatic monitor is val/gender_acc, and best.ckpt holds the epoch that
    reached the highest (demo.yaml names val/ua, so "auto" is given to restore the default)."""
    run = tmp_path / "run"
    main(["fit", *_common(corpus, run), "--model.tasks", "[gender]", "--checkpoint.monitor", "auto",
          "--trainer.max_epochs", "2"])
    with open(next(run.rglob("metrics.csv"))) as handle:
        gender = [float(r["val/gender_acc"]) for r in csv.DictReader(handle) if r.get("val/gender_acc")]
    assert len(gender) == 2  # one validation per epoch
    best = read_checkpoint(run / "checkpoints" / "best.ckpt")
    assert best["hyper_parameters"]["tasks"] == ["gender"]
    assert best["epoch"] == gender.index(max(gender))  # the first epoch with the highest accuracy
    (state,) = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint{'monitor': 'val/gender_acc'")]
    assert float(state["best_model_score"]) == pytest.approx(max(gender))
    (schedule,) = [v for k, v in best["callbacks"].items() if k.startswith("RestoreBestHalveLR{'monitor': 'val/gender")]
    assert schedule["best_score"] == pytest.approx(max(gender))
