"""Dimensional emotion and age through the real CLI: activation / valence / dominance beside the categories
(fit, test: CCC per dimension from predictions.csv), alone in ``ser-mtl cv`` with report and compare, on
MSP-Podcast's 1-7 scale, and age on CREMA-D (its demographics' years)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_args import run_args
from corpus_trees_extra import CREMA_ACTORS, make_msp_podcast
from test_class_sets import corpus_cv, six_actor_crema_d

from ser_mtl.analysis.compare import compare_dirs
from ser_mtl.cli import main
from ser_mtl.data.corpora import build_manifest
from ser_mtl.tasks import concordance_correlation

DIMS = ("activation", "valence", "dominance")


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def dims_args(corpus: Path, run: Path, tasks: str) -> list[str]:
    return [*run_args(corpus, run), "--model.tasks", tasks, "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "3"]


@pytest.fixture(scope="module")
def beside_categories(corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dims") / "run"
    args = dims_args(corpus, run, "[emotion, gender, speaker, activation, valence, dominance]")
    main(["fit", *args])
    main(["test", *args, "--ckpt_path", str(run / "checkpoints" / "best.ckpt")])
    return run


@pytest.mark.slow
def test_dimensions_beside_categories_are_scored_by_ccc_on_the_corpus_scale(beside_categories, corpus):
    metrics = json.loads((beside_categories / "test_metrics.json").read_text())
    table = read_table(beside_categories / "predictions.csv")
    by_id = {r.utt_id: r for r in build_manifest("iemocap", corpus / "IEMOCAP_full_release").rows}
    assert {"wa", "ua", "macro_f1", "gender_acc"} <= set(metrics)  # the categories are still scored
    for dim in DIMS:
        rows = [row for row in table if row[f"{dim}_true"]]
        assert len(rows) == metrics[f"n_{dim}_utterances"] > 0
        true = np.array([float(row[f"{dim}_true"]) for row in rows])
        pred = np.array([float(row[f"{dim}_pred"]) for row in rows])
        # the true values are the manifest's, on IEMOCAP's own 1-5 scale (not the [0, 1] the model learns)
        assert true == pytest.approx([getattr(by_id[row["utt_id"]], dim) for row in rows], abs=1e-6)
        assert true.min() >= 1 and true.max() <= 5 and len(set(true)) > 1
        assert metrics[f"ccc_{dim}"] == pytest.approx(concordance_correlation(pred, true), abs=1e-4)
        assert -1 <= metrics[f"ccc_{dim}"] <= 1
    assert metrics["ccc_mean"] == pytest.approx(np.mean([metrics[f"ccc_{d}"] for d in DIMS]))
    # one row per test utterance: emotion columns and the dimensions side by side
    assert len(table) == metrics["n_utterances"] and {"label", "p_angry", "valence_pred"} <= set(table[0])


@pytest.mark.slow
def test_synthetic_dimensions_follow_the_emotion(corpus):
    rows = [r for r in build_manifest("iemocap", corpus / "IEMOCAP_full_release").rows if r.activation is not None]
    by_class = {e: np.mean([r.activation for r in rows if r.emotion == e]) for e in ("angry", "sad")}
    assert by_class["angry"] > by_class["sad"] + 0.5  # anger is aroused, sadness is not


@pytest.mark.slow
def test_a_value_outside_its_scale_is_named(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *dims_args(corpus, tmp_path / "run", "[valence]"), "--data.value_ranges", "{valence: [1, 2]}"])
    err = capsys.readouterr().err
    assert "valence" in err and "outside the scale [1, 2]" in err and "data.value_ranges" in err
    assert "Traceback" not in err


def dims_cv(corpus: Path, out: Path, tasks: str, *extra: str) -> dict:
    args = dims_args(corpus, out / "unused", tasks)
    i = args.index("--trainer.default_root_dir")
    # in this process: the child-process path is tested elsewhere (test_cv_runner, test_cv_jobs); 8 start-ups saved
    main(["cv", *args[:i], *args[i + 2:], "--cv.folds", "0,1", "--cv.out", str(out), "--cv.in_process", "true",
          *extra])
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_dimensions_alone_run_the_protocol_with_report_and_compare(corpus, tmp_path, capsys):
    ccc = dims_cv(corpus, tmp_path / "ccc", "[activation, valence]")
    mse = dims_cv(corpus, tmp_path / "mse", "[activation, valence]",
                  "--model.task_losses", "{activation: mse, valence: mse}")
    for summary, out in ((ccc, tmp_path / "ccc"), (mse, tmp_path / "mse")):
        assert summary["complete"] and summary["wa_mean"] is None  # no categories, no WA
        runs = [json.loads((out / f"fold{f}_rep0" / "metrics.json").read_text()) for f in (0, 1)]
        assert summary["ccc_valence_mean"] == pytest.approx(np.mean([r["ccc_valence"] for r in runs]))
        assert summary["ccc_mean_mean"] == pytest.approx(np.mean([r["ccc_mean"] for r in runs]))
        assert all(r["selection"]["monitor"] == "val/ccc_mean" and r["selection"]["mode"] == "max" for r in runs)
        # without the emotion task the folds hold every utterance with a value, the 4 classes' and the others'
        assert runs[0]["n_valence_utterances"] > 0 and "n_utterances" not in runs[0]
    assert "CCC valence" in capsys.readouterr().out  # the cv's headline
    result = compare_dirs([str(tmp_path / "ccc"), str(tmp_path / "mse")])
    assert result["metric"] == "ccc_mean"  # auto: no UA in the reference
    per_run = result["comparisons"][0]["metrics"]["ccc_mean"]["per_run"]
    diffs = [json.loads((tmp_path / "mse" / f"fold{f}_rep0" / "metrics.json").read_text())["ccc_mean"]
             - json.loads((tmp_path / "ccc" / f"fold{f}_rep0" / "metrics.json").read_text())["ccc_mean"]
             for f in (0, 1)]
    assert per_run["n"] == 2 and per_run["mean_diff"] == pytest.approx(np.mean(diffs), abs=1e-9)
    main(["report", str(tmp_path / "ccc"), str(tmp_path / "mse"), "--out", str(tmp_path / "report")])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Dimensional emotion" in markdown and "| CCC activation | CCC valence | CCC mean |" in markdown
    assert f"| {ccc['ccc_valence_mean']:.3f} ± – |" in markdown  # one repeat: no spread to show


@pytest.mark.slow
def test_dimensions_on_msp_podcast_use_its_seven_point_scale(tmp_path):
    make_msp_podcast(tmp_path / "corpus", seconds=0.3)
    out = tmp_path / "cv"
    main(["cv", "--config", "configs/msp_podcast.yaml", "--data.root", str(tmp_path / "corpus"),
          "--data.aux_root", "null", "--data.cache_dir", str(tmp_path / "cache"), "--data.segment_frames", "64",
          "--data.segment_hop", "32", "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]", "--trainer.logger", "false",
          "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.accelerator", "cpu",
          "--model.tasks", "[emotion, activation, valence, dominance]", "--cv.folds", "0", "--cv.out", str(out),
          "--cv.in_process", "true"])
    table = read_table(out / "fold0_rep0" / "predictions.csv")
    by_id = {r.utt_id: r for r in build_manifest("msp_podcast", tmp_path / "corpus").rows}
    rows = [row for row in table if row["activation_true"]]
    assert rows and [float(row["activation_true"]) for row in rows] == [by_id[row["utt_id"]].activation for row in rows]
    assert all(not row["dominance_true"] or float(row["dominance_true"]) == 4.5 for row in table)
    assert json.loads((out / "summary.json").read_text())["ccc_activation_mean"] is not None


@pytest.mark.slow
def test_age_trains_beside_emotion_with_its_error_in_years(tmp_path):
    six_actor_crema_d(tmp_path / "corpus")
    # corpus_cv trains [emotion, gender]; age is one more registry entry on the command line
    summary = corpus_cv(tmp_path, "crema_d.yaml", tmp_path / "corpus", "0", "--model.tasks", "[emotion, age]")
    metrics = json.loads((tmp_path / "cv" / "fold0_rep0" / "metrics.json").read_text())
    table = read_table(tmp_path / "cv" / "fold0_rep0" / "predictions.csv")
    ages = {**{actor: float(v[0]) for actor, v in CREMA_ACTORS.items()}, "1006": 30.0, "1007": 33.0}
    rows = [row for row in table if row["age_true"]]
    assert len(rows) == metrics["n_age_utterances"] > 0
    assert [float(row["age_true"]) for row in rows] == [ages[row["speaker"]] for row in rows]
    errors = [abs(float(row["age_pred"]) - float(row["age_true"])) for row in rows]
    assert metrics["age_mae"] == pytest.approx(np.mean(errors), abs=1e-4) and metrics["age_mae"] > 0
    assert summary["age_mae_mean"] == pytest.approx(metrics["age_mae"]) and "ua" in metrics
    main(["report", str(tmp_path / "cv"), "--out", str(tmp_path / "report")])
    assert "age MAE (years)" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_classify_gives_the_values_test_gave(beside_categories, corpus, tmp_path):
    table = {row["utt_id"]: row for row in read_table(beside_categories / "predictions.csv")}
    utt_id = min(table)
    wav = next((corpus / "IEMOCAP_full_release").rglob(f"{utt_id}.wav"))
    main(["classify", "--ckpt", str(beside_categories / "checkpoints" / "best.ckpt"), "--inputs", str(wav),
          "--out", str(tmp_path / "p.json")])
    (prediction,) = json.loads((tmp_path / "p.json").read_text())
    assert set(prediction) == {"path", "pred", "p_angry", "p_happy", "p_neutral", "p_sad", *DIMS}
    for dim in DIMS:  # the same segments through the same front-end: test's utterance mean, on the 1-5 scale
        assert prediction[dim] == pytest.approx(float(table[utt_id][f"{dim}_pred"]), abs=1e-4)
    assert prediction["p_sad"] == pytest.approx(float(table[utt_id]["p_sad"]), abs=1e-4)
