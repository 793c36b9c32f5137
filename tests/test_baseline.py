"""`ser-mtl baseline`: utterance statistics + logistic regression on the fit's own split and features."""

import json

import numpy as np
import pytest

from ser_mtl.baselines.baseline import utterance_statistics
from ser_mtl.cli import main


def test_utterance_statistics_by_hand():
    frames = np.array([[0.0, 2.0, 4.0], [1.0, 1.0, 4.0]])  # (F=2, T=3)
    # row means 2, 2; stds sqrt(8/3), sqrt(2); deltas [2, 2] and [0, 3]: means 2, 1.5, stds 0, 1.5
    np.testing.assert_allclose(utterance_statistics(frames),
                               [2, 2, np.sqrt(8 / 3), np.sqrt(2), 2, 1.5, 0, 1.5])
    np.testing.assert_allclose(utterance_statistics(frames, "std"), [np.sqrt(8 / 3), np.sqrt(2), 0, 1.5])
    # a constant level added to every frame moves the means and nothing else
    np.testing.assert_allclose(utterance_statistics(frames + 3.0, "std"), utterance_statistics(frames, "std"))
    with pytest.raises(ValueError, match="stats"):
        utterance_statistics(frames, "median")


@pytest.mark.slow
@pytest.mark.parametrize("stats", ["mean_std", "std"])
def test_baseline_command_scores_the_test_session(corpus, tmp_path, stats, capsys):
    out, predictions = tmp_path / "baseline.json", tmp_path / "predictions.csv"
    main(["baseline", "--config", "configs/demo.yaml",
          "--data.root", str(corpus / "IEMOCAP_full_release"), "--data.aux_root", str(corpus / "LibriSpeech"),
          "--data.cache_dir", str(tmp_path / "cache"), "--trainer.logger", "false",
          "--baseline.out", str(out), "--baseline.stats", stats, "--baseline.predictions", str(predictions)])
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert f"UA {100 * result['ua']:.2f} %" in printed
    # loso_session fold 0 tests session 1: its utterances of the four classes, each once
    from ser_mtl.lightning_cli import build_datamodule

    dm = build_datamodule(["--config", "configs/demo.yaml", "--data.root", str(corpus / "IEMOCAP_full_release"),
                           "--data.aux_root", str(corpus / "LibriSpeech"), "--data.cache_dir", str(tmp_path / "cache")])
    test_rows = [dm.rows[i] for i in dm.split.test]
    assert {r.session for r in test_rows} == {"1"}
    assert result["n_utterances"] == sum(dm.label_scheme.encode(r) >= 0 for r in test_rows) > 0
    assert result["stats"] == stats and result["classes"] == ["angry", "happy", "neutral", "sad"]
    assert result["C"] in (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0) == tuple(result["c_grid"])
    # 64 mel rows (configs/demo.yaml): mean and std of the frames and of their deltas, or the two stds
    assert result["n_features"] == {"mean_std": 4 * 64, "std": 2 * 64}[stats]
    # WA, UA and the confusion matrix are sklearn's on the written predictions, one row per test utterance
    table = _check_against_predictions(result, predictions, result["classes"])
    assert [r["utt_id"] for r in table] == [r.utt_id for r in test_rows if dm.label_scheme.encode(r) >= 0]
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--config", "configs/demo.yaml", "--baseline.stats", "median"])
    assert exit_info.value.code == 2 and "--baseline.stats" in capsys.readouterr().err


def test_scores_and_classifiers_agree_with_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    from ser_mtl.baselines.baseline import make_classifier
    from ser_mtl.metrics import score_predictions

    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2])
    got = score_predictions(y_true, y_pred, 4)  # class 3 absent: UA over the three present
    assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert got["wa"] == pytest.approx(accuracy_score(y_true, y_pred)) == pytest.approx(6 / 9)
    assert got["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred)) == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    np.testing.assert_array_equal(got["confmat"], confusion_matrix(y_true, y_pred, labels=range(4)))
    # two well-separated clouds in 5 dimensions, a tenfold scale difference between features: both fit them
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 5)), rng.normal(4, 1, (30, 5))]) * [1, 10, 1, 10, 1]
    y = np.repeat([0, 1], 30)
    for classifier in ("logreg", "linear_svm"):
        assert (make_classifier(classifier, 1.0).fit(x, y).predict(x) == y).all()


def _check_against_predictions(result, predictions, classes):
    """WA/UA and the confusion matrix recomputed with sklearn from the written predictions."""
    import csv

    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

    with open(predictions, newline="") as handle:
        table = list(csv.DictReader(handle))
    labels, preds = [r["label"] for r in table], [r["pred"] for r in table]
    assert len(table) == result["n_utterances"] > 0
    assert result["wa"] == pytest.approx(accuracy_score(labels, preds))
    assert result["ua"] == pytest.approx(balanced_accuracy_score(labels, preds))
    np.testing.assert_array_equal(result["confmat"], confusion_matrix(labels, preds, labels=classes))
    return table


def _corpus_args(corpus, tmp_path):
    return ["--config", "configs/demo.yaml", "--data.root", str(corpus / "IEMOCAP_full_release"),
            "--data.aux_root", "null", "--data.cache_dir", str(tmp_path / "cache"), "--trainer.logger", "false"]


def test_egemaps_baseline_on_the_corpus(corpus, tmp_path, capsys):
    pytest.importorskip("opensmile")
    from ser_mtl.baselines.opensmile_features import SmileCache, functionals, utterance_samples
    from ser_mtl.lightning_cli import build_datamodule

    out, predictions = tmp_path / "egemaps.json", tmp_path / "predictions.csv"
    args = _corpus_args(corpus, tmp_path)
    main(["baseline", *args, "--baseline.features", "egemaps", "--baseline.out", str(out),
          "--baseline.predictions", str(predictions)])
    result = json.loads(out.read_text())
    assert f"UA {100 * result['ua']:.2f} %" in capsys.readouterr().out
    classes = ["angry", "happy", "neutral", "sad"]
    assert result["classes"] == classes and result["label"] == "eGeMAPS + LogReg"
    assert result["n_features"] == 88 and result["audio"] == "trimmed" and result["C"] in result["c_grid"]
    table = _check_against_predictions(result, predictions, classes)
    # the test utterances are session 1's labelled ones, and every labelled utterance was extracted once
    dm = build_datamodule(args)
    dm.setup("fit")
    test_rows = [dm.rows[i] for i in dm.split.test if dm.label_scheme.encode(dm.rows[i]) >= 0]
    assert [r["utt_id"] for r in table] == [r.utt_id for r in test_rows] and {r.session for r in test_rows} == {"1"}
    labelled = sum(dm.label_scheme.encode(r) >= 0 for r in dm.rows)
    assert result["n_extracted"] == labelled
    # what is cached is openSMILE on the samples the feature store featurised (silence removed)
    cache = SmileCache("egemaps", dm.features, str(tmp_path / "cache"))
    path = corpus / "IEMOCAP_full_release" / test_rows[0].path
    own = functionals(cache.opensmile.Smile(feature_set=cache.opensmile.FeatureSet.eGeMAPSv02,
                                            feature_level=cache.opensmile.FeatureLevel.Functionals),
                      utterance_samples(path, dm.features), dm.features.sample_rate)
    cached, extracted = cache.features(dm.rows, dm.hparams.root, [dm.rows.index(test_rows[0])])
    assert extracted == 0
    np.testing.assert_allclose(cached[0], own, rtol=1e-6)


@pytest.mark.slow
def test_egemaps_baseline_every_fold_and_report(corpus, tmp_path, capsys):
    pytest.importorskip("opensmile")
    from ser_mtl.analysis.report import report

    cv_out = tmp_path / "egemaps_cv"
    args = _corpus_args(corpus, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", *args, "--baseline.features", "egemaps", "--baseline.cv_out", str(cv_out),
              "--baseline.repeats", "2"])
    assert exit_info.value.code == 1 and "no randomness" in capsys.readouterr().err
    main(["baseline", *args, "--baseline.features", "egemaps", "--baseline.cv_out", str(cv_out)])
    summary = json.loads((cv_out / "summary.json").read_text())
    assert summary["folds"] == [0, 1, 2] and summary["repeats"] == [0] and summary["complete"]
    uas = []
    for fold in range(3):
        metrics = json.loads((cv_out / f"fold{fold}_rep0" / "metrics.json").read_text())
        assert (metrics["fold"], metrics["repeat"], metrics["features"], metrics["classifier"]) == \
            (fold, 0, "egemaps", "logreg")
        _check_against_predictions(metrics, cv_out / f"fold{fold}_rep0" / "predictions.csv", metrics["classes"])
        uas.append(metrics["ua"])
    assert summary["ua_mean"] == pytest.approx(np.mean(uas))  # one repeat: the plain fold average
    record = json.loads((cv_out / "cv.json").read_text())
    assert record["baseline"]["label"] == "eGeMAPS + LogReg" and record["grid"] == {"folds": [0, 1, 2], "repeats": [0]}
    printed = capsys.readouterr().out
    assert printed.count("utterances extracted") == 3 and "(0 utterances extracted)" in printed
    # a re-run does nothing; other settings into the same folder are refused
    main(["baseline", *args, "--baseline.features", "egemaps", "--baseline.cv_out", str(cv_out)])
    assert capsys.readouterr().out.count("done before, skipped") == 3
    with pytest.raises(SystemExit):
        main(["baseline", *args, "--baseline.features", "egemaps", "--baseline.classifier", "linear_svm",
              "--baseline.cv_out", str(cv_out)])
    assert "different" in capsys.readouterr().err
    text = (tmp_path / "report" / "report.md")
    report([str(cv_out)], str(tmp_path / "report"))
    row = next(line for line in text.read_text().splitlines() if line.startswith("| eGeMAPS + LogReg |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["eGeMAPS + LogReg", "iemocap", "categorical", "loso_session"]
    assert cells[6] == f"{100 * summary['wa_mean']:.1f} ± –" and cells[10:] == ["–", "–"]  # no paper numbers


def test_report_names_a_baseline_folder_beside_a_network_folder(tmp_path):
    from ser_mtl.analysis.report import report
    from ser_mtl.analysis.summary import aggregate
    from ser_mtl.io_utils import atomic_write_json

    resolved = {"data": {"corpus": "iemocap", "scheme": "loso", "task": "categorical"},
                "model": {"tasks": ["emotion", "gender", "speaker"], "use_decoder": True, "use_discriminator": True}}
    for name, ua, baseline in (("net", 0.60, None), ("egemaps", 0.50, {"label": "eGeMAPS + LogReg"})):
        record = {"config_args": [], "base_seed": 0, "config_files": {}, "label": None, "grid": {"folds": [0, 1],
                  "repeats": [0]}, "resolved": {"data": resolved["data"]} if baseline else resolved}
        if baseline:
            record["baseline"] = baseline
        atomic_write_json(tmp_path / name / "cv.json", record)
        for fold in (0, 1):
            atomic_write_json(tmp_path / name / f"fold{fold}_rep0" / "metrics.json",
                              {"fold": fold, "repeat": 0, "seed": 1, "wa": ua + 0.02 * fold, "ua": ua + 0.02 * fold})
        aggregate(str(tmp_path / name), verbose=False)
    text = (tmp_path / "report" / "report.md")
    report([str(tmp_path / "net"), str(tmp_path / "egemaps")], str(tmp_path / "report"))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in text.read_text().splitlines() if line.startswith("| ") and "experiment" not in line}
    assert rows["net"][1] == "AAE (emotion+gender+speaker)" and rows["net"][11] != "–"  # the paper's Table 3 row
    assert rows["egemaps"][1:5] == ["eGeMAPS + LogReg", "iemocap", "categorical", "loso"]
    assert rows["egemaps"][7] == "51.0 ± –" and rows["egemaps"][10:] == ["–", "–"]
