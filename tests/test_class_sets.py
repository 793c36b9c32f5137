"""Any corpus's class set end to end through the real CLI: an 8-class model on the synthetic IEMOCAP
(fit, test, classify, export, baseline, report with its confusion figure, compare), and ``ser-mtl cv`` on
CREMA-D (6 classes), RAVDESS (8) and MSP-Podcast (8, official partition) trees in their real layouts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_args import run_args
from corpus_trees_extra import make_crema_d, make_msp_podcast, make_ravdess
from sklearn.metrics import f1_score

from ser_mtl.cli import main
from ser_mtl.data.corpora import build_manifest
from ser_mtl.data.labels import make_label_scheme

EIGHT = ["angry", "excited", "frustrated", "happy", "neutral", "other", "sad", "surprised"]


def eight_class_args(corpus: Path, run: Path) -> list[str]:
    return [*run_args(corpus, run), "--data.classes", json.dumps(EIGHT), "--data.class_map", "{}"]


@pytest.fixture(scope="module")
def eight_class_run(corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("eight") / "run"
    main(["fit", *eight_class_args(corpus, run), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4"])
    main(["test", *eight_class_args(corpus, run), "--ckpt_path", str(run / "checkpoints" / "best.ckpt")])
    return run


@pytest.mark.slow
def test_an_eight_class_model_fits_tests_classifies_and_exports(eight_class_run, corpus, tmp_path):
    metrics = json.loads((eight_class_run / "test_metrics.json").read_text())
    assert metrics["classes"] == EIGHT and np.asarray(metrics["confmat"]).shape == (8, 8)
    with open(eight_class_run / "predictions.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == metrics["n_utterances"] and set(table[0]) >= {f"p_{c}" for c in EIGHT}
    # the test split's labels are the eight classes of the session-1 rows, excited kept apart from happy
    rows = build_manifest("iemocap", corpus / "IEMOCAP_full_release").rows
    scheme = make_label_scheme("categorical", "iemocap", classes=EIGHT, class_map={})
    by_id = {r.utt_id: r for r in rows}
    assert [row["label"] for row in table] == [scheme.category(by_id[row["utt_id"]]) for row in table]
    assert any(row["label"] == "excited" for row in table)
    assert metrics["macro_f1"] == pytest.approx(f1_score([r["label"] for r in table], [r["pred"] for r in table],
                                                         average="macro", zero_division=0))
    ckpt = eight_class_run / "checkpoints" / "best.ckpt"
    wav = next((corpus / "IEMOCAP_full_release" / "Session1" / "sentences" / "wav").rglob("*.wav"))
    main(["classify", "--ckpt", str(ckpt), "--inputs", str(wav), "--out", str(tmp_path / "p.json")])
    (prediction,) = json.loads((tmp_path / "p.json").read_text())
    assert set(prediction) == {"path", "pred"} | {f"p_{c}" for c in EIGHT} and prediction["pred"] in EIGHT
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "m.onnx")])
    assert json.loads((tmp_path / "m.frontend.json").read_text())["classes"] == EIGHT


@pytest.mark.slow
def test_eight_class_baseline_and_report(eight_class_run, corpus, tmp_path):
    args = eight_class_args(corpus, tmp_path / "unused")
    i = args.index("--trainer.default_root_dir")
    args = [*args[:i], *args[i + 2:]]
    main(["baseline", *args, "--baseline.out", str(tmp_path / "b.json")])
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["classes"] == EIGHT and np.asarray(result["confmat"]).shape == (8, 8) and "macro_f1" in result
    cv = tmp_path / "cv"
    main(["cv", *args, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--cv.folds", "0,1",
          "--cv.out", str(cv), "--cv.in_process", "true"])  # stage children: test_cv_runner, test_cv_jobs
    summary = json.loads((cv / "summary.json").read_text())
    assert summary["macro_f1_mean"] is not None and 0.0 <= summary["macro_f1_mean"] <= 1.0
    main(["report", str(cv), "--out", str(tmp_path / "report")])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "macro-F1 (%)" in markdown and "categorical (8: angry, excited" in markdown
    assert "paper UA" in markdown and "66.7" not in markdown  # never beside the paper's 4-class numbers
    assert list((tmp_path / "report").glob("*confusion*.png"))


def corpus_cv(tmp_path: Path, config: str, root: Path, folds: str, *extra: str) -> dict:
    out = tmp_path / "cv"
    main(["cv", "--config", f"configs/{config}", "--data.root", str(root), "--data.aux_root", "null",
          "--data.cache_dir", str(tmp_path / "cache"), "--data.segment_frames", "64", "--data.segment_hop", "32",
          "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]", "--trainer.logger", "false",
          "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.accelerator", "cpu",
          "--data.num_workers", "0", "--model.tasks", "[emotion, gender]", "--cv.folds", folds, "--cv.out", str(out),
          "--cv.in_process", "true", *extra])  # in this process: stage children are tested in test_cv_runner
    return json.loads((out / "summary.json").read_text())


def six_actor_crema_d(root: Path) -> None:
    """make_crema_d's four actors, and two more (1006, 1007) as copies of 1001 and 1002 with their own rows."""
    import shutil

    make_crema_d(root, actors=("1001", "1002", "1003", "1004"), seconds=0.3)
    for new, old in (("1006", "1001"), ("1007", "1002")):
        for wav in sorted((root / "AudioWAV").glob(f"{old}_*.wav")):
            shutil.copy(wav, wav.with_name(wav.name.replace(old, new, 1)))
    with open(root / "VideoDemographics.csv", "a") as f:
        f.write('1006,30,"Male","Asian","Not Hispanic"\n1007,33,"Female","Asian","Not Hispanic"\n')


@pytest.mark.slow
@pytest.mark.parametrize("config, make, classes", [
    ("crema_d.yaml", six_actor_crema_d,
     ["angry", "disgust", "fear", "happy", "neutral", "sad"]),
    ("ravdess.yaml", lambda root: make_ravdess(root, songs=True, seconds=0.1),
     ["neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprised"]),
])
def test_cv_on_corpora_in_their_own_class_sets(tmp_path, config, make, classes):
    make(tmp_path / "corpus")
    summary = corpus_cv(tmp_path, config, tmp_path / "corpus", "0,1")
    assert summary["n_runs"] == 2 and summary["complete"]
    for fold in (0, 1):
        metrics = json.loads((tmp_path / "cv" / f"fold{fold}_rep0" / "metrics.json").read_text())
        assert metrics["classes"] == classes and np.asarray(metrics["confmat"]).shape == (len(classes),) * 2
        with open(tmp_path / "cv" / f"fold{fold}_rep0" / "predictions.csv", newline="") as f:
            table = list(csv.DictReader(f))
        assert {row["label"] for row in table} <= set(classes) and len(table) == metrics["n_utterances"]
        assert metrics["macro_f1"] == pytest.approx(f1_score([r["label"] for r in table], [r["pred"] for r in table],
                                                             average="macro", zero_division=0))


@pytest.mark.slow
def test_cv_on_msp_podcast_official_partition(tmp_path):
    make_msp_podcast(tmp_path / "corpus", seconds=0.3)
    summary = corpus_cv(tmp_path, "msp_podcast.yaml", tmp_path / "corpus", "0")
    metrics = json.loads((tmp_path / "cv" / "fold0_rep0" / "metrics.json").read_text())
    assert metrics["classes"] == ["angry", "sad", "happy", "surprised", "fear", "disgust", "contempt", "neutral"]
    assert summary["complete"] and metrics["n_utterances"] > 0
    assert metrics["selection"]["monitor"] == "val/macro_f1"
