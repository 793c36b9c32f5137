"""Choosing a sweep's setting on validation per (fold, repeat): DIR/selected/ from hand-written runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ser_mtl.analysis.report import discover, load_experiment, report, summed_confusion
from ser_mtl.analysis.selection import select_on_validation
from ser_mtl.analysis.summary import aggregate, read_run_metrics
from ser_mtl.cli import main
from ser_mtl.runs.sweep import run_sweep

CLASSES = ["angry", "happy", "neutral", "sad"]
SETTINGS = ["model.alpha=0.4", "model.alpha=0.6"]
# (fold, repeat): ((val, test UA) of alpha 0.4, (val, test UA) of alpha 0.6). 0.6 has the better test UA in
# every run; validation chooses 0.4, 0.6, 0.4 (a tie: the first setting wins), 0.4.
RUNS = {(0, 0): ((0.70, 0.50), (0.60, 0.60)), (1, 0): ((0.55, 0.52), (0.65, 0.62)),
        (0, 1): ((0.66, 0.54), (0.66, 0.64)), (1, 1): ((0.72, 0.56), (0.58, 0.66))}
CHOSEN_MAX = {(0, 0): 0, (1, 0): 1, (0, 1): 0, (1, 1): 0}
CHOSEN_MIN = {(0, 0): 1, (1, 0): 0, (0, 1): 0, (1, 1): 1}  # smallest validation score; the tie again to 0.4


def write_run(sweep: Path, setting: int, fold: int, repeat: int, selection: dict | None = None) -> None:
    val, ua = RUNS[(fold, repeat)][setting]
    run = {"fold": fold, "repeat": repeat, "seed": 7, "wa": ua + 0.05, "ua": ua, "classes": CLASSES,
           "confmat": (np.eye(4, dtype=int) * (1 + 9 * setting)).tolist(),  # alpha 0.4: 1s, alpha 0.6: 10s
           "selection": selection or {"monitor": "val/ua", "mode": "max", "score": val, "epoch": 3}}
    path = sweep / SETTINGS[setting] / f"fold{fold}_rep{repeat}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))


def make_sweep(root: Path, mode: str = "max") -> Path:
    settings = [{"values": {"model.alpha": a}, "dir": d, "summary": f"{d}/summary.json"}
                for a, d in zip((0.4, 0.6), SETTINGS)]
    root.mkdir(parents=True)
    (root / "sweep.json").write_text(json.dumps({"params": ["model.alpha"], "mode": "zip",
                                                 "config_args": ["--model.beta", "0.5"], "settings": settings}))
    for (fold, repeat), pair in RUNS.items():
        for setting in (0, 1):
            monitor = {"monitor": "val/loss", "mode": "min", "score": pair[setting][0], "epoch": 3}
            write_run(root, setting, fold, repeat, monitor if mode == "min" else None)
    return root


def expected_ua(chosen: dict[tuple[int, int], int]) -> float:
    """Mean over repeats of each repeat's fold average of the chosen runs' test UA."""
    repeats = sorted({r for _, r in chosen})
    return float(np.mean([np.mean([RUNS[(f, r)][s][1] for (f, r), s in chosen.items() if r == rep])
                          for rep in repeats]))


def test_selection_chooses_on_validation_not_test(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "alpha")
    selection = select_on_validation(sweep, verbose=False)
    assert [(c["fold"], c["repeat"], c["setting"]) for c in selection["chosen"]] == \
        [(f, r, SETTINGS[CHOSEN_MAX[(f, r)]]) for f, r in [(0, 0), (1, 0), (0, 1), (1, 1)]]
    assert selection["chosen"][0]["scores"] == {SETTINGS[0]: 0.70, SETTINGS[1]: 0.60}
    assert selection["counts"] == {"0.4": 3, "0.6": 1} and selection["skipped"] == []
    run = read_run_metrics(sweep / "selected" / "fold1_rep0" / "metrics.json")
    assert run["ua"] == 0.62 and run["selected"] == {"setting": SETTINGS[1], "values": {"model.alpha": 0.6}}
    summary = json.loads((sweep / "selected" / "summary.json").read_text())
    # repeat 0: (0.50 + 0.62) / 2 = 0.56, repeat 1: (0.54 + 0.56) / 2 = 0.55 (by test score: 0.61, 0.65)
    assert summary["ua_mean"] == pytest.approx(expected_ua(CHOSEN_MAX)) == pytest.approx(0.555)
    assert summary["ua_std"] == pytest.approx(0.005 * np.sqrt(2)) and summary["n_runs"] == 4
    assert summary["config"] == {"selection": True, "config_args": ["--model.beta", "0.5"],
                                 "params": ["model.alpha"], "selected_on": "val/ua"}
    total, _ = summed_confusion(load_experiment(sweep / "selected"))
    assert np.array_equal(total, np.eye(4) * (3 * 1 + 1 * 10))  # three 0.4 runs, one 0.6 run


def test_the_selected_folder_costs_the_whole_sweep(tmp_path: Path) -> None:
    """Every setting was trained to choose among them: selected/'s cost is the sweep's (8 runs, 2 pretrainings),
    not the 4 chosen runs'; one setting's cost is its own."""
    sweep = make_sweep(tmp_path / "alpha")
    for path in sweep.glob("*/fold*/metrics.json"):
        run = json.loads(path.read_text())
        run["cost"] = {"fit_seconds": 30.0, "test_seconds": 6.0, "startup_seconds": 4.0, "processes": 1,
                       "shared_by": 1, "device": "cpu"}
        path.write_text(json.dumps(run))
    for setting in SETTINGS:
        (sweep / setting / "pretrain_rep0").mkdir()
        (sweep / setting / "pretrain_rep0" / "fit_record.json").write_text(json.dumps(
            {"selection": None, "cost": {"fit_seconds": 60.0, "startup_seconds": 0.0, "processes": 1}}))
    select_on_validation(sweep, verbose=False)
    cost = json.loads((sweep / "selected" / "summary.json").read_text())["cost"]
    assert (cost["fits"], cost["pretrainings"], cost["settings"]) == (10, 2, 2)
    assert cost["fit_seconds"] == 8 * 30.0 + 2 * 60.0 and cost["test_seconds"] == 8 * 6.0
    assert cost["device_hours"] == pytest.approx((8 * 40.0 + 2 * 60.0) / 3600)
    one = aggregate(str(sweep / SETTINGS[0]), verbose=False)["cost"]
    assert (one["fits"], one["pretrainings"], "settings" in one) == (5, 1, False)


def test_min_mode_chooses_the_smallest(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "alpha", mode="min")
    selection = select_on_validation(sweep, verbose=False)
    assert {(c["fold"], c["repeat"]): SETTINGS.index(c["setting"]) for c in selection["chosen"]} == CHOSEN_MIN
    assert selection["selected_on"] == "val/loss" and selection["counts"] == {"0.4": 2, "0.6": 2}
    summary = json.loads((sweep / "selected" / "summary.json").read_text())
    assert summary["ua_mean"] == pytest.approx(expected_ua(CHOSEN_MIN))  # (0.60 + 0.52) / 2, (0.54 + 0.66) / 2


def test_incomplete_pairs_are_skipped_and_a_rerun_follows_the_runs(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "alpha")
    select_on_validation(sweep, verbose=False)
    (sweep / SETTINGS[1] / "fold1_rep1" / "metrics.json").unlink()  # not finished (yet)
    write_run(sweep, 0, 0, 1, {"monitor": "val/ua", "mode": "max", "score": None, "epoch": None})
    selection = select_on_validation(sweep, verbose=False)
    assert selection["skipped"] == [
        {"fold": 0, "repeat": 1, "reason": f"{SETTINGS[0]}: no selection score"},
        {"fold": 1, "repeat": 1, "reason": f"{SETTINGS[1]}: not finished"}]
    assert selection["counts"] == {"0.4": 1, "0.6": 1}
    assert sorted(p.parent.name for p in (sweep / "selected").glob("*/metrics.json")) == ["fold0_rep0", "fold1_rep0"]
    summary = json.loads((sweep / "selected" / "summary.json").read_text())
    assert summary["ua_mean"] == pytest.approx(0.56) and summary["n_repeats"] == 1  # repeat 1 incomplete
    write_run(sweep, 0, 0, 1)
    write_run(sweep, 1, 1, 1)
    selection = select_on_validation(sweep, verbose=False)
    assert selection["skipped"] == [] and selection["counts"] == {"0.4": 3, "0.6": 1}
    assert json.loads((sweep / "selected" / "summary.json").read_text())["ua_mean"] == pytest.approx(0.555)


def test_aggregate_on_a_sweep_folder_selects(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "alpha")
    main(["aggregate", str(sweep)])
    for setting in SETTINGS:
        assert json.loads((sweep / setting / "summary.json").read_text())["n_runs"] == 4
    assert json.loads((sweep / "selected" / "selection.json").read_text())["counts"] == {"0.4": 3, "0.6": 1}
    assert json.loads((sweep / "selected" / "summary.json").read_text())["ua_mean"] == pytest.approx(0.555)
    main(["aggregate", str(sweep)])  # again: selected/ is not aggregated as a setting, nothing changes
    assert json.loads((sweep / "selected" / "summary.json").read_text())["n_runs"] == 4


def test_report_shows_the_selected_row_and_its_confusion(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "alpha")
    main(["aggregate", str(sweep)])
    [loaded] = discover([str(sweep)])
    assert [exp.name for _, exp in loaded.settings] == SETTINGS  # selected/ is no setting
    markdown = Path(report([str(sweep)], str(tmp_path / "out"))).read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("| selected on validation")]
    assert rows == [["selected on validation (chosen: 0.4 x3, 0.6 x1)", "2×2", "60.5 ± 0.7", "55.5 ± 0.7",
                     "–"]]
    assert f"Confusion matrix of the runs selected on validation (`{sweep / 'selected'}`)" in markdown
    assert "](confusion_alpha_selected.png)" in markdown and (tmp_path / "out" / "confusion_alpha_selected.png").is_file()
    assert "best" not in markdown.lower()


class NoSelectionBackend:
    """Stand-in CLI whose runs record no validation score (runs made before selection was recorded)."""

    def num_folds(self, config_args):
        return 2

    def resolve_config(self, config_args):
        return {}

    def run_stage(self, stage, args, run_dir):
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints" / "best.ckpt").write_text("best")
        if stage == "test":
            (run_dir / "test_metrics.json").write_text(json.dumps({"wa": 0.5, "ua": 0.5}))


def test_sweep_writes_selected_and_reports_why_nothing_was_chosen(tmp_path: Path) -> None:
    sweep = tmp_path / "alpha"
    run_sweep([], ["model.alpha"], [0.4, 0.6], str(sweep), folds=[0, 1], repeats=1, backend=NoSelectionBackend())
    selection = json.loads((sweep / "selected" / "selection.json").read_text())
    assert selection["chosen"] == [] and len(selection["skipped"]) == 2
    assert selection["skipped"][0]["reason"] == f"{SETTINGS[0]}: no selection score; {SETTINGS[1]}: no selection score"
    assert not (sweep / "selected" / "summary.json").exists()
    markdown = Path(report([str(sweep)], str(tmp_path / "out"))).read_text()
    assert f"- no setting selected on validation yet ({SETTINGS[0]}: no selection score;" in markdown
    assert "confusion_alpha" not in markdown


def resolved(task: str, alpha: float) -> dict:
    return {"data": {"corpus": "iemocap", "task": task, "scheme": "loso", "seed": 0},
            "model": {"alpha": alpha, "tasks": ["emotion", "gender", "speaker"], "use_decoder": True,
                      "use_discriminator": True}}


def test_selection_carries_the_protocol_and_refuses_mixed_label_spaces(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "alpha")
    for setting, alpha in zip(SETTINGS, (0.4, 0.6)):
        (sweep / setting / "cv.json").write_text(json.dumps({"resolved": resolved("categorical", alpha)}))
    select_on_validation(sweep, verbose=False)
    record = json.loads((sweep / "selected" / "cv.json").read_text())
    assert record["resolved"]["data"]["task"] == "categorical" and record["resolved"]["model"]["alpha"] is None
    assert load_experiment(sweep / "selected").protocol.scheme == "loso"  # a row the report can describe
    # a sweep over data.task: categorical and activation runs are never mixed into one UA
    for setting, task in zip(SETTINGS, ("categorical", "activation")):
        (sweep / setting / "cv.json").write_text(json.dumps({"resolved": resolved(task, 0.4)}))
    selection = select_on_validation(sweep, verbose=False)
    assert selection["chosen"] == [] and "the settings differ in data.task" in selection["refused"]
    assert sorted(p.name for p in (sweep / "selected").iterdir()) == ["selection.json"]
    (item,) = discover([str(sweep)])
    assert item.selected is None and any("no selection on validation: the settings differ in data.task" in n
                                         for n in item.notes)
