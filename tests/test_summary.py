"""summary.json from hand-written metrics.json files: numbers checked by hand and against numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ser_mtl.analysis.summary import (
    SummaryError,
    aggregate,
    mean_std,
    read_run_metrics,
    summarize,
)
from ser_mtl.cli import main

# 2 folds x 2 repeats.  repeat 0: WA (0.60 + 0.70) / 2 = 0.65, UA (0.50 + 0.60) / 2 = 0.55
#                       repeat 1: WA (0.62 + 0.76) / 2 = 0.69, UA (0.58 + 0.66) / 2 = 0.62
# WA over repeats: mean 0.67, sample std sqrt(((-0.02)^2 + 0.02^2) / 1) = 0.02 * sqrt(2)
# UA over repeats: mean 0.585, sample std 0.035 * sqrt(2)
RUNS = {  # (fold, repeat): (wa, ua, eer)
    (0, 0): (0.60, 0.50, 0.10), (1, 0): (0.70, 0.60, 0.20),
    (0, 1): (0.62, 0.58, 0.12), (1, 1): (0.76, 0.66, 0.18),
}


def write_run(root: Path, fold: int, repeat: int, wa: float, ua: float, eer: float | None = None,
              folder: str | None = None, **extra) -> Path:
    run = {"fold": fold, "repeat": repeat, "seed": 100 * repeat + fold, "wa": wa, "ua": ua, **extra}
    if eer is not None:
        run["eer"] = eer
    path = root / (folder or f"fold{fold}_rep{repeat}") / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


@pytest.fixture
def cv_dir(tmp_path: Path) -> Path:
    for (fold, rep), (wa, ua, eer) in RUNS.items():
        write_run(tmp_path, fold, rep, wa, ua, eer)
    return tmp_path


def test_headline_is_mean_and_sample_std_of_repeat_fold_averages(cv_dir: Path) -> None:
    summary = aggregate(str(cv_dir), verbose=False)
    assert summary["wa_mean"] == pytest.approx(0.67)
    assert summary["wa_std"] == pytest.approx(0.02 * np.sqrt(2))
    assert summary["ua_mean"] == pytest.approx(0.585)
    assert summary["ua_std"] == pytest.approx(0.035 * np.sqrt(2))
    # independent check: numpy, ddof=1, over the per-repeat fold averages
    wa_rep = [np.mean([RUNS[(f, r)][0] for f in (0, 1)]) for r in (0, 1)]
    assert summary["wa_std"] == pytest.approx(np.std(wa_rep, ddof=1))
    # EER: both repeats average 0.15 -> std 0
    assert summary["eer_mean"] == pytest.approx(0.15) and summary["eer_std"] == pytest.approx(0.0)
    assert [e["wa"] for e in summary["per_repeat"]] == pytest.approx([0.65, 0.69])
    assert summary["n_runs"] == 4 and summary["n_repeats"] == 2 and summary["complete"] is True
    assert [(r["fold"], r["repeat"]) for r in summary["runs"]] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert {r["dir"] for r in summary["runs"]} == {"fold0_rep0", "fold1_rep0", "fold0_rep1", "fold1_rep1"}


def test_per_fold_aggregates_over_repeats(cv_dir: Path) -> None:
    per_fold = {f["fold"]: f for f in aggregate(str(cv_dir), verbose=False)["per_fold"]}
    assert per_fold[0]["wa_mean"] == pytest.approx(0.61)  # (0.60 + 0.62) / 2
    assert per_fold[0]["wa_std"] == pytest.approx(np.std([0.60, 0.62], ddof=1))
    assert per_fold[1]["ua_mean"] == pytest.approx(0.63)  # (0.60 + 0.66) / 2
    assert per_fold[1]["ua_std"] == pytest.approx(0.03 * np.sqrt(2))
    assert per_fold[1]["n_repeats"] == 2


def test_single_repeat_has_zero_std(tmp_path: Path) -> None:
    write_run(tmp_path, 0, 0, 0.5, 0.4)
    write_run(tmp_path, 1, 0, 0.7, 0.6)
    summary = aggregate(str(tmp_path), verbose=False)
    assert summary["wa_mean"] == pytest.approx(0.6) and summary["wa_std"] == 0.0
    assert summary["ua_std"] == 0.0 and "eer_mean" not in summary
    assert mean_std([0.3]) == (0.3, 0.0)


def test_incomplete_repeat_is_left_out_and_listed(tmp_path: Path) -> None:
    for (fold, rep), (wa, ua, _) in RUNS.items():
        if (fold, rep) != (1, 1):
            write_run(tmp_path, fold, rep, wa, ua)
    summary = aggregate(str(tmp_path), verbose=False)
    assert summary["complete_repeats"] == [0] and summary["missing"] == [{"fold": 1, "repeat": 1}]
    assert summary["wa_mean"] == pytest.approx(0.65) and summary["wa_std"] == 0.0  # repeat 0 only
    assert summary["complete"] is False
    per_fold = {f["fold"]: f for f in summary["per_fold"]}
    assert per_fold[1]["n_repeats"] == 1 and per_fold[0]["n_repeats"] == 2
    # the requested grid counts too: folds 0-2 asked for, fold 2 never ran -> no complete repeat
    none = summarize(summary["runs"], folds=[0, 1, 2], repeats=[0, 1])
    assert none["wa_mean"] is None and none["n_repeats"] == 0 and len(none["missing"]) == 3


def test_aggregate_is_atomic_and_idempotent(cv_dir: Path) -> None:
    (cv_dir / "cv.json").write_text(json.dumps({"config_args": ["--config", "c.yaml"], "base_seed": 0,
                                                "grid": {"folds": [0, 1], "repeats": [0, 1]}}))
    first = aggregate(str(cv_dir), verbose=False)
    text = (cv_dir / "summary.json").read_text()
    second = aggregate(str(cv_dir), verbose=False)
    assert (cv_dir / "summary.json").read_text() == text
    assert json.loads(text) == first == second
    assert first["config"]["config_args"] == ["--config", "c.yaml"]
    leftovers = sorted(p.name for p in cv_dir.iterdir() if p.is_file())
    assert leftovers == ["cv.json", "summary.json"]  # no temporary file left behind


def test_aggregate_reads_any_folder_names(tmp_path: Path) -> None:
    write_run(tmp_path, 3, 0, 0.4, 0.3, folder="my_own_run_a")
    write_run(tmp_path, 5, 0, 0.6, 0.5, folder="b")
    summary = aggregate(str(tmp_path), verbose=False)
    assert summary["folds"] == [3, 5] and summary["ua_mean"] == pytest.approx(0.4)


def test_bad_metrics_files_are_named(tmp_path: Path) -> None:
    path = write_run(tmp_path, 0, 0, 66.0, 0.5)  # percent instead of a fraction
    with pytest.raises(SummaryError, match=r"fold0_rep0/metrics.json: expected 'wa'.*fraction"):
        read_run_metrics(path)
    path.write_text(json.dumps({"fold": 0, "repeat": 0, "wa": 0.5}))
    with pytest.raises(SummaryError, match=r"metrics.json: missing key\(s\) seed;"):
        aggregate(str(tmp_path), verbose=False)
    path.write_text(json.dumps({"fold": 0, "repeat": 0, "seed": 1, "wa": 0.5}))
    with pytest.raises(SummaryError, match=r"metrics.json: has wa without ua"):
        aggregate(str(tmp_path), verbose=False)
    path.write_text(json.dumps({"fold": 0, "repeat": 0, "seed": 1, "n_utterances": 3}))
    with pytest.raises(SummaryError, match=r"metrics.json: no score; expected at least one of wa, ua, macro_f1, ccc_activation, .*, eer"):
        aggregate(str(tmp_path), verbose=False)
    path.write_text(json.dumps({"fold": 0, "repeat": 0, "seed": 1, "speaker_acc": 75.0}))
    with pytest.raises(SummaryError, match=r"expected 'speaker_acc' to be a number in \[0, 1\]"):
        aggregate(str(tmp_path), verbose=False)
    path.write_text("{not json")
    with pytest.raises(SummaryError, match=r"metrics.json:1: not valid JSON"):
        aggregate(str(tmp_path), verbose=False)


def test_duplicate_runs_and_empty_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SummaryError, match="nothing to summarise"):
        aggregate(str(tmp_path), verbose=False)
    write_run(tmp_path, 0, 0, 0.5, 0.5, folder="a")
    write_run(tmp_path, 0, 0, 0.6, 0.6, folder="b")
    with pytest.raises(SummaryError, match=r"b/metrics.json: fold 0 repeat 0 is also in .*a/metrics.json"):
        aggregate(str(tmp_path), verbose=False)


def test_aggregate_command_handles_a_folder_of_cv_folders(tmp_path: Path, capsys) -> None:
    for name, ua in (("model.alpha=0.1", 0.3), ("model.alpha=0.2", 0.5)):
        write_run(tmp_path / "sweep" / name, 0, 0, ua, ua)
    write_run(tmp_path / "cv", 0, 0, 0.7, 0.7)
    main(["aggregate", str(tmp_path / "sweep"), str(tmp_path / "cv")])  # several folders, as positionals
    uas = [json.loads((tmp_path / path / "summary.json").read_text())["ua_mean"]
           for path in ("sweep/model.alpha=0.1", "sweep/model.alpha=0.2", "cv")]
    assert uas == pytest.approx([0.3, 0.5, 0.7]) and not (tmp_path / "sweep" / "summary.json").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["aggregate", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"ser-mtl aggregate: {tmp_path / 'nowhere'}: no such cross-validation folder\n"


# Auxiliary-task accuracies of a model without the emotion task, 2 folds x 2 repeats:
# gender: repeat 0 (0.90 + 0.80) / 2 = 0.85, repeat 1 (0.94 + 0.84) / 2 = 0.89 -> mean 0.87, std 0.02 * sqrt(2)
# speaker: repeat 0 (0.50 + 0.70) / 2 = 0.60, repeat 1 (0.60 + 0.60) / 2 = 0.60 -> mean 0.60, std 0
AUX_RUNS = {(0, 0): (0.90, 0.50), (1, 0): (0.80, 0.70), (0, 1): (0.94, 0.60), (1, 1): (0.84, 0.60)}


def test_gender_and_speaker_accuracy_are_aggregated_like_the_eer(tmp_path: Path, capsys) -> None:
    for (fold, rep), (gender, speaker) in AUX_RUNS.items():
        path = tmp_path / f"fold{fold}_rep{rep}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"fold": fold, "repeat": rep, "seed": rep, "gender_acc": gender,
                                    "speaker_acc": speaker, "n_gender_utterances": 10, "eer": 0.1}))
    summary = aggregate(str(tmp_path))
    assert summary["wa_mean"] is None and summary["ua_mean"] is None  # no emotion task: null, not an error
    assert summary["gender_acc_mean"] == pytest.approx(0.87)
    assert summary["gender_acc_std"] == pytest.approx(0.02 * np.sqrt(2))
    assert summary["speaker_acc_mean"] == pytest.approx(0.60) and summary["speaker_acc_std"] == pytest.approx(0.0)
    assert summary["gender_acc_repeats"] == 2 and summary["speaker_acc_repeats"] == 2
    assert [e["gender_acc"] for e in summary["per_repeat"]] == pytest.approx([0.85, 0.89])
    assert summary["per_fold"][0]["speaker_acc_mean"] == pytest.approx(0.55)
    assert "gender 87.0 ± 2.8 %  speaker 60.0 ± 0.0 %  EER 10.0 ± 0.0 %" in capsys.readouterr().out


def test_speaker_accuracy_absent_when_a_repeat_lacks_it(cv_dir: Path) -> None:
    """Speaker-independent schemes have no speaker_acc: absent, never averaged in as 0."""
    write_run(cv_dir, 0, 0, *RUNS[(0, 0)], gender_acc=0.9, speaker_acc=0.5)
    summary = aggregate(str(cv_dir), verbose=False)
    assert "speaker_acc_mean" not in summary and "gender_acc_mean" not in summary  # only 1 of 2 runs had them
    assert summary["ua_mean"] == pytest.approx(0.585)


def test_a_one_repeat_headline_shows_no_spread(tmp_path: Path, capsys) -> None:
    for fold, (wa, ua) in enumerate([(0.30, 0.28), (0.338, 0.32)]):
        path = tmp_path / f"fold{fold}_rep0" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"fold": fold, "repeat": 0, "seed": 0, "wa": wa, "ua": ua}))
    aggregate(str(tmp_path))
    line = capsys.readouterr().out
    assert "WA 31.9 %  UA 30.0 %" in line and "±" not in line.split("(")[0]  # std over one repeat is no spread
    assert "one repeat: no ± over repeats" in line


def test_the_cost_counts_the_pretrainings(tmp_path: Path) -> None:
    for fold in (0, 1):
        path = tmp_path / f"fold{fold}_rep0" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"fold": fold, "repeat": 0, "seed": 0, "wa": 0.5, "ua": 0.5, "cost": {
            "fit_seconds": 100.0, "test_seconds": 10.0, "processes": 1, "device": "cpu"}}))
    pretrain = tmp_path / "pretrain_rep0" / "fit_record.json"
    pretrain.parent.mkdir()
    pretrain.write_text(json.dumps({"selection": None, "cost": {"fit_seconds": 400.0, "processes": 2,
                                                                 "device": "NVIDIA H100"}}))
    cost = aggregate(str(tmp_path), verbose=False)["cost"]
    assert (cost["fits"], cost["pretrainings"]) == (3, 1)  # the two runs and the pretraining they started from
    assert cost["fit_seconds"] == 600.0 and cost["test_seconds"] == 20.0
    assert cost["device_hours"] == pytest.approx((2 * 110 + 2 * 400) / 3600)  # DDP: both processes' time
    assert cost["devices"] == ["NVIDIA H100", "cpu"]


def test_a_pretraining_that_shared_its_device_counts_half(tmp_path: Path) -> None:
    """``shared_by`` of a pretraining comes from its fit_done.json (the runner's slot), a run's from metrics.json."""
    path = tmp_path / "fold0_rep0" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fold": 0, "repeat": 0, "seed": 0, "wa": 0.5, "ua": 0.5, "cost": {
        "fit_seconds": 100.0, "test_seconds": 10.0, "startup_seconds": 8.0, "processes": 1, "shared_by": 2}}))
    pretrain = tmp_path / "pretrain_rep0"
    pretrain.mkdir()
    (pretrain / "fit_record.json").write_text(json.dumps({"selection": None, "cost": {
        "fit_seconds": 400.0, "startup_seconds": 4.0, "processes": 1}}))
    (pretrain / "fit_done.json").write_text(json.dumps({"resumed_from": None, "shared_by": 4}))
    cost = aggregate(str(tmp_path), verbose=False)["cost"]
    assert (cost["startup_seconds"], cost["shared"]) == (12.0, 2)
    assert cost["device_hours"] == pytest.approx((118.0 / 2 + 404.0 / 4) / 3600)
