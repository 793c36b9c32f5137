"""Auxiliary-task evaluation at test: utterance-level gender and speaker-ID accuracy, the EER of a
LibriSpeech-primary run, and a whole `ser-mtl cv` of a model without the emotion task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_mtl.data.datamodule import SERDataModule
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.run_outputs import aux_accuracies
from ser_mtl.runs.cv import run_cv


def utterance_accuracy_by_hand(ckpt: Path, task: str) -> tuple[float, int]:
    """Average each test utterance's segment posteriors of ``task``'s head, argmax, compare with its label."""
    model = MultiTaskAAE.load_from_checkpoint(ckpt).eval()
    datamodule = SERDataModule.load_from_checkpoint(ckpt)
    datamodule.setup("test")
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    label_of: dict[int, int] = {}
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            probs = model.heads[task](model.encode(batch["x"])).softmax(dim=-1)  # (B, C)
            for p, u, y in zip(probs, batch["utt"].tolist(), batch[task].tolist()):
                if y < 0:
                    continue
                sums[u] = sums.get(u, 0) + p
                counts[u] = counts.get(u, 0) + 1
                label_of[u] = y
    hits = [int((sums[u] / counts[u]).argmax()) == label_of[u] for u in sums]
    return float(np.mean(hits)) if hits else float("nan"), len(hits)


def test_aux_accuracies_from_utterance_tables() -> None:
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])  # (U=4, C=2): preds 0, 1, 1, 0
    metrics = aux_accuracies({"gender": (np.arange(4), probs, np.array([0, 1, 0, 0]))})
    assert metrics == {"gender_acc": 0.75, "n_gender_utterances": 4}


def test_speaker_independent_test_has_gender_but_no_speaker_accuracy(trained_run: Path) -> None:
    """demo.yaml tests session 1, whose speakers are not trained on: speaker label -1, so no speaker_acc."""
    metrics = json.loads((trained_run / "test_metrics.json").read_text())
    gender, n = utterance_accuracy_by_hand(trained_run / "checkpoints" / "best.ckpt", "gender")
    assert metrics["n_gender_utterances"] == n == metrics["n_utterances"] and n > 0
    assert metrics["gender_acc"] == pytest.approx(gender, abs=1e-12)
    assert "speaker_acc" not in metrics and "n_speaker_utterances" not in metrics
    assert {"wa", "ua", "confmat"} <= set(metrics)  # the emotion keys are unchanged


def test_cv_of_a_model_without_the_emotion_task(corpus: Path, tmp_path: Path) -> None:
    """LibriSpeech-primary, tasks [gender, speaker] (paper 6.2's single-task mode has [speaker]): the 10fold
    test split holds out utterances of training speakers, so speaker_acc is a speaker-ID accuracy, and the
    EER comes from LibriSpeech test-clean (2 speakers x 4 utterances: 3 enrolled, 1 trial each)."""
    config = ["--config", "configs/demo_pretrain.yaml", "--data.root", str(corpus / "LibriSpeech"),
              "--data.cache_dir", str(tmp_path / "cache"), "--data.segment_frames", "64", "--data.segment_hop", "32",
              "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]", "--data.verification_enrol", "3",
              "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
              "--trainer.enable_progress_bar", "false"]
    out = tmp_path / "cv"
    summary = run_cv(config, [0], 1, str(out), in_process=True)
    for fold in (0,):
        run = out / f"fold{fold}_rep0"
        tested = json.loads((run / "test_metrics.json").read_text())
        assert "wa" not in tested and "ua" not in tested and not (run / "predictions.csv").exists()
        speaker, n = utterance_accuracy_by_hand(run / "checkpoints" / "best.ckpt", "speaker")
        assert tested["n_speaker_utterances"] == n > 0 and tested["speaker_acc"] == pytest.approx(speaker, abs=1e-12)
        assert 0.0 <= tested["eer"] <= 1.0
        metrics = json.loads((run / "metrics.json").read_text())
        for key in ("gender_acc", "speaker_acc", "eer", "n_gender_utterances", "n_speaker_utterances"):
            assert metrics[key] == tested[key], key
    runs = summary["runs"]
    assert summary["wa_mean"] is None and summary["ua_mean"] is None
    assert summary["speaker_acc_mean"] == pytest.approx(np.mean([r["speaker_acc"] for r in runs]))
    assert summary["gender_acc_mean"] == pytest.approx(np.mean([r["gender_acc"] for r in runs]))
    assert summary["eer_mean"] == pytest.approx(np.mean([r["eer"] for r in runs]))


def test_librispeech_primary_verifies_on_its_own_test_clean(corpus: Path, tmp_path: Path) -> None:
    """10fold on train-clean-360 (no auxiliary corpus): the trials are test-clean's 2 speakers x 4 utterances
    alone, none of them a training speaker: 3 enrolled + 1 trial each -> 2 trials x 2 models = 4 trials."""
    from ser_mtl.data.features import LogSpectrogram
    from ser_mtl.verification import primary_verification_set, run_speaker_verification

    datamodule = SERDataModule(corpus="librispeech", root=str(corpus / "LibriSpeech"), subset="train-clean-360",
                               aux_root=None, scheme="10fold", segment_frames=64, segment_hop=32,
                               features=LogSpectrogram(n_bins=64), cache_dir=str(tmp_path / "cache"),
                               verification_enrol=3, model_tasks=["gender", "speaker"])
    datamodule.setup("test")
    assert datamodule.verification_dataloader() is None  # the emotion-corpus path does not apply (10fold)
    loader, speaker_of = primary_verification_set(datamodule)
    offset = len(datamodule.utterances)
    assert sorted(speaker_of) == list(range(offset, offset + 8))
    assert len(set(speaker_of.values())) == 2 and not set(speaker_of.values()) & set(datamodule.speakers)
    assert {int(u) for batch in loader for u in batch["utt"]} == set(speaker_of)
    model = MultiTaskAAE(num_speakers=datamodule.num_speakers, tasks=["gender", "speaker"],
                         input_size=datamodule.input_size, encoder_pools=[[2, 2], [2, 2], [2, 2]])
    result = run_speaker_verification(model, datamodule)
    assert (result["n_trials"], result["n_target"], result["n_speakers"]) == (4, 2, 2) and 0 <= result["eer"] <= 1
    datamodule.hparams.verification_subset = None  # verification off: nothing
    assert primary_verification_set(datamodule) is None
