"""Report tables equal the summaries (percent, one decimal), figures are real PNGs, paper rows match."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ser_mtl.analysis.paper_results import PAPER_RESULTS, Protocol, match, protocol_from_config
from ser_mtl.analysis.report import load_experiment, report, summed_confusion
from ser_mtl.analysis.summary import aggregate, summarize
from ser_mtl.cli import main
from ser_mtl.runs.sweep import run_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["angry", "happy", "neutral", "sad"]
# (fold, repeat): (wa, ua, eer).  Repeat fold-averages: WA 0.663 / 0.703, UA 0.601 / 0.641
# -> WA 68.3 ± 2.8, UA 62.1 ± 2.8 (percent; std = 0.02 * sqrt(2) = 0.0283); EER 0.1 in every run.
RUNS = {(0, 0): (0.650, 0.590, 0.1), (1, 0): (0.676, 0.612, 0.1),
        (0, 1): (0.690, 0.630, 0.1), (1, 1): (0.716, 0.652, 0.1)}
PROPOSED_LOSO = {"data": {"corpus": "iemocap", "task": "categorical", "scheme": "loso", "target_corpus": None},
                 "model": {"tasks": ["emotion", "gender", "speaker"], "use_decoder": True,
                           "use_discriminator": True}}


def confmat(fold: int, repeat: int) -> list[list[int]]:
    return (np.eye(4, dtype=int) * (5 + fold) + repeat).tolist()


def make_cv(root: Path, resolved: dict | None = PROPOSED_LOSO, with_confmat: bool = True) -> Path:
    for (fold, rep), (wa, ua, eer) in RUNS.items():
        run = {"fold": fold, "repeat": rep, "seed": fold + 10 * rep, "wa": wa, "ua": ua, "eer": eer}
        if with_confmat:
            run |= {"classes": CLASSES, "confmat": confmat(fold, rep)}
        (root / f"fold{fold}_rep{rep}").mkdir(parents=True)
        (root / f"fold{fold}_rep{rep}" / "metrics.json").write_text(json.dumps(run))
    (root / "cv.json").write_text(json.dumps({"config_args": [], "base_seed": 0, "config_files": {},
                                              "label": None, "resolved": resolved}))
    return root


def table_rows(markdown: str, first_cell: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r[0] == first_cell]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000, path


def test_table_numbers_equal_the_summary_and_paper_is_beside(tmp_path: Path) -> None:
    cv = make_cv(tmp_path / "proposed_loso")
    summary = aggregate(str(cv), verbose=False)
    markdown = Path(report([str(cv)], str(tmp_path / "out"))).read_text()
    [row] = table_rows(markdown, "proposed_loso")
    header = table_rows(markdown, "experiment")[0]
    cells = dict(zip(header, row))
    assert cells["WA (%)"] == "68.3 ± 2.8" == f"{100 * summary['wa_mean']:.1f} ± {100 * summary['wa_std']:.1f}"
    assert cells["UA (%)"] == "62.1 ± 2.8" == f"{100 * summary['ua_mean']:.1f} ± {100 * summary['ua_std']:.1f}"
    assert cells["EER (%)"] == "10.0 ± 0.0"
    assert cells["model"] == "AAE (emotion+gender+speaker)"
    assert (cells["corpus"], cells["task"], cells["scheme"], cells["folds×repeats"]) == \
        ("iemocap", "categorical", "loso", "2×2")
    assert cells["paper UA (%)"] == "66.7 ± 1.4 (T3); 66.7 ± 1.4 (T5)"  # Tables 3 and 5, same protocol
    assert cells["paper WA (%)"] == "68.5 ± 1.2 (T5)"
    assert "paper" in header[-1] and "not ours" in markdown
    fold_rows = {r[0]: r for r in (table_rows(markdown, "0") + table_rows(markdown, "1"))}
    assert fold_rows["0"][2:4] == ["67.0 ± 2.8", "61.0 ± 2.8"]  # fold 0 over its two repeats
    for png in ("confusion_proposed_loso.png", "eer.png"):
        assert f"]({png})" in markdown
        assert_png(tmp_path / "out" / png)


def test_confusion_is_summed_over_runs_from_metrics_or_predictions(tmp_path: Path) -> None:
    expected = sum(np.asarray(confmat(f, r)) for f, r in RUNS)
    total, classes = summed_confusion(load_experiment(make_cv(tmp_path / "a")))
    assert classes == CLASSES and np.array_equal(total, expected)
    # diagonal: (5 + 6) per repeat twice, plus the repeat offsets 0 + 0 + 1 + 1; off-diagonal: the offsets
    assert total[0, 0] == 24 and total[2, 2] == 24 and total[0, 1] == 2 and total.sum() == 4 * 24 + 12 * 2
    # without confmat in the metrics: the runs' predictions.csv files are counted instead
    cv = make_cv(tmp_path / "b", with_confmat=False)
    for name, pairs in {"fold0_rep0": [("sad", "sad"), ("sad", "angry")], "fold1_rep1": [("happy", "sad")]}.items():
        with open(cv / name / "predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["utt_id", "speaker", "label", "pred"] + [f"p_{c}" for c in CLASSES])
            writer.writerows([[f"u{i}", "s", label, pred, 0.25, 0.25, 0.25, 0.25]
                              for i, (label, pred) in enumerate(pairs)])
    aggregate(str(cv), verbose=False)
    total, classes = summed_confusion(load_experiment(cv))
    assert total.sum() == 3 and total[3, 3] == 1 and total[3, 0] == 1 and total[1, 3] == 1


def test_unmatched_protocol_shows_no_paper_number(tmp_path: Path) -> None:
    other = {"data": {"corpus": "iemocap", "task": "categorical", "scheme": "loso"},
             "model": {"tasks": ["emotion", "gender"], "use_decoder": True, "use_discriminator": False}}
    cv = make_cv(tmp_path / "ae_gender", resolved=other)
    markdown = Path(report([str(cv)], str(tmp_path / "out"))).read_text()  # no summary.json: in memory
    [row] = table_rows(markdown, "ae_gender")
    assert row[1] == "AE (emotion+gender)" and row[-2:] == ["–", "–"]
    assert "no summary.json yet" in markdown and not (cv / "summary.json").exists()


class SweepBackend:
    """Minimal stand-in CLI: UA = 0.5 + alpha / 10 + 0.012 * fold (WA = UA + 0.05)."""

    def num_folds(self, config_args):
        return 2

    def resolve_config(self, config_args):
        tasks = [json.loads(config_args[i + 1]) for i, a in enumerate(config_args[:-1]) if a == "--model.tasks"]
        return {"data": PROPOSED_LOSO["data"], "model": {**PROPOSED_LOSO["model"], "tasks": tasks[-1]}} \
            if tasks else PROPOSED_LOSO

    def run_stage(self, stage, args, run_dir):
        value = lambda name: [args[i + 1] for i, a in enumerate(args[:-1]) if a == name][-1]
        if stage == "fit":
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints" / "best.ckpt").write_text("best")
            return
        ua = 0.5 + float(value("--model.alpha")) / 10 + 0.012 * int(value("--data.fold"))
        (run_dir / "test_metrics.json").write_text(json.dumps(
            {"wa": ua + 0.05, "ua": ua, "classes": CLASSES, "confmat": np.eye(4, dtype=int).tolist()}))


def test_sweep_report_has_a_row_per_value_and_a_plot(tmp_path: Path) -> None:
    sweep = tmp_path / "alpha"
    run_sweep([], ["model.alpha"], [0.2, 0.4, 0.6], str(sweep), folds=[0, 1], repeats=1, backend=SweepBackend())
    main(["report", str(sweep), "--out", str(tmp_path / "out")])
    markdown = (tmp_path / "out" / "report.md").read_text()
    for alpha in (0.2, 0.4, 0.6):
        [row] = table_rows(markdown, str(alpha))
        ua = 0.5 + alpha / 10 + 0.006  # mean over folds 0 and 1: 52.6, 54.6, 56.6 %
        assert row[1:4] == ["2×1", f"{100 * (ua + 0.05):.1f} ± –", f"{100 * ua:.1f} ± –"]  # one repeat: no spread
    assert "Paper, same protocol at its own α/β: WA 68.5 ± 1.2 (T5), UA 66.7 ± 1.4 (T3); 66.7 ± 1.4 (T5)." \
        in markdown
    assert_png(tmp_path / "out" / "sweep_alpha.png")
    # no confusion figure chosen by test UA; these runs record no validation score to select on
    assert not list((tmp_path / "out").glob("confusion_*")) and "best" not in markdown.lower()
    assert "- no setting selected on validation yet (model.alpha=0.2: no selection score;" in markdown
    assert "Paper: its α/β chosen on validation (paper 5.1). Ours: one row per value (its test score)" in markdown


def test_sweep_over_auxiliary_tasks_shows_table5_per_row(tmp_path: Path) -> None:
    sweep = tmp_path / "aux"
    tasks = [["emotion", "gender"], ["emotion", "speaker"], ["emotion", "gender", "speaker"]]
    record = run_sweep(["--model.alpha", "0.4"], ["model.tasks"], tasks, str(sweep), folds=[0], repeats=1,
                       backend=SweepBackend())
    assert [s["dir"] for s in record["settings"]] == ["model.tasks=emotion+gender", "model.tasks=emotion+speaker",
                                                      "model.tasks=emotion+gender+speaker"]
    markdown = Path(report([str(sweep)], str(tmp_path / "out"))).read_text()
    rows = {r[0]: r for r in table_rows(markdown, '["emotion", "gender"]') + table_rows(markdown, '["emotion", "speaker"]')}
    assert rows['["emotion", "gender"]'][-2:] == ["67.5 ± 1.5 (T5)", "66.1 ± 1.7 (T5)"]
    assert rows['["emotion", "speaker"]'][-2:] == ["67.2 ± 1.3 (T5)", "65.9 ± 1.6 (T5)"]
    assert_png(tmp_path / "out" / "sweep_aux.png")


def test_report_of_a_folder_of_experiments_and_bad_input(tmp_path: Path) -> None:
    make_cv(tmp_path / "runs" / "one")
    make_cv(tmp_path / "runs" / "two")
    for name in ("one", "two"):
        aggregate(str(tmp_path / "runs" / name), verbose=False)
    extra = tmp_path / "runs" / "two" / "fold2_rep0"  # finished after the summary was written
    extra.mkdir()
    (extra / "metrics.json").write_text(json.dumps({"fold": 2, "repeat": 0, "seed": 1, "wa": 0.5, "ua": 0.5}))
    markdown = Path(report([str(tmp_path / "runs")], str(tmp_path / "out"))).read_text()
    assert len(table_rows(markdown, "one")) == 1 and len(table_rows(markdown, "two")) == 1
    assert "two/summary.json covers 4 runs but 5 are finished; `ser-mtl aggregate" in markdown
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out2")])
    assert exit_info.value.code == 1


def test_paper_numbers_as_printed() -> None:
    def find(table: str, corpus: str, scheme: str, task: str, arch: str, aux: str, metric: str = "ua"):
        [hit] = [r for r in PAPER_RESULTS if (r.table, r.corpus, r.task, r.arch, r.aux, r.metric)
                 == (table, corpus, task, arch, aux, metric) and scheme in r.schemes]
        return hit.mean, hit.std

    # Table 3, 10-fold and leave-one-speaker-out (UA)
    assert find("3", "iemocap", "10fold", "categorical", "aae", "both") == (68.8, 1.2)
    assert find("3", "msp_improv", "10fold", "categorical", "aae", "both") == (63.6, 1.7)
    assert find("3", "iemocap", "10fold", "categorical", "cnn", "both") == (65.6, 2.0)
    assert find("3", "msp_improv", "10fold", "categorical", "cnn", "both") == (59.5, 2.4)
    assert find("3", "iemocap", "10fold", "categorical", "ae", "both") == (66.4, 1.6)
    assert find("3", "msp_improv", "10fold", "categorical", "ae", "both") == (60.2, 2.3)
    assert find("3", "iemocap", "loso", "categorical", "aae", "both") == (66.7, 1.4)
    assert find("3", "msp_improv", "loso_session", "categorical", "aae", "both") == (60.3, 1.1)
    assert find("3", "iemocap", "loso", "categorical", "aae", "none") == (64.5, 1.5)
    assert find("3", "msp_improv", "loso", "categorical", "aae", "none") == (58.1, 1.7)
    # Table 4, cross-corpus; Table 5 WA and UA; Table 6 (metric not stated by the paper)
    [t4] = [r for r in PAPER_RESULTS if r.table == "4" and r.arch == "aae"]
    assert (t4.corpus, t4.target, t4.mean, t4.std) == ("iemocap", "msp_improv", 46.41, 0.32)
    assert find("5", "iemocap", "loso", "categorical", "aae", "gender", "wa") == (67.5, 1.5)
    assert find("5", "msp_improv", "loso", "categorical", "aae", "speaker", "ua") == (59.1, 1.5)
    assert find("5", "msp_improv", "loso", "categorical", "aae", "both", "wa") == (62.5, 1.4)
    assert find("6", "iemocap", "loso", "activation", "aae", "both", "unspecified") == (64.5, 1.5)
    assert find("6", "msp_improv", "loso", "valence", "aae", "gender", "unspecified") == (53.4, 1.8)
    assert find("6", "iemocap", "loso", "av5", "aae", "speaker", "unspecified") == (54.2, 1.2)
    assert find("6", "msp_improv", "loso", "av3", "aae", "both", "unspecified") == (62.1, 1.8)
    counts = {t: sum(r.table == t for r in PAPER_RESULTS) for t in "3456"}
    assert counts == {"3": 16, "4": 4, "5": 12, "6": 24}


def test_protocol_from_resolved_config() -> None:
    assert protocol_from_config(PROPOSED_LOSO) == Protocol("iemocap", "loso", "categorical", "aae", "both",
                                                           None, ("emotion", "gender", "speaker"))
    cross = {"data": {"class_path": "x.SERDataModule", "init_args": {"corpus": "iemocap", "task": "categorical",
                                                                     "scheme": "cross_corpus",
                                                                     "target_corpus": "msp_improv"}},
             "model": {"tasks": ["emotion", "gender", "speaker"], "use_decoder": True, "use_discriminator": True}}
    assert [r.mean for r in match(protocol_from_config(cross))] == [46.41]
    cnn_single = {"data": {"corpus": "iemocap", "task": "categorical", "scheme": "10fold"},
                  "model": {"tasks": ["emotion"], "use_decoder": False, "use_discriminator": False}}
    assert protocol_from_config(cnn_single).arch == "cnn" and match(protocol_from_config(cnn_single)) == []
    assert protocol_from_config(None) is None and match(None) == []


STL_LOSO = {"data": PROPOSED_LOSO["data"],
            "model": {"tasks": ["emotion"], "use_decoder": True, "use_discriminator": True}}
AE_LOSO = {"data": PROPOSED_LOSO["data"],
           "model": {"tasks": ["emotion", "gender", "speaker"], "use_decoder": True, "use_discriminator": False}}


def make_repeats(root: Path, resolved: dict, ua_by_repeat: list[float]) -> Path:
    """2 folds x len(ua_by_repeat) repeats; fold 0 scores ua - 0.01 and fold 1 ua + 0.01 (average: ua)."""
    for rep, ua in enumerate(ua_by_repeat):
        for fold, shift in ((0, -0.01), (1, 0.01)):
            run = {"fold": fold, "repeat": rep, "seed": rep, "wa": ua + shift, "ua": ua + shift}
            (root / f"fold{fold}_rep{rep}").mkdir(parents=True)
            (root / f"fold{fold}_rep{rep}" / "metrics.json").write_text(json.dumps(run))
    (root / "cv.json").write_text(json.dumps({"config_args": [], "base_seed": 0, "config_files": {},
                                              "label": None, "resolved": resolved}))
    aggregate(str(root), verbose=False)
    return root


def test_report_marks_the_rows_whose_ua_differs_significantly_from_the_proposed_row(tmp_path: Path) -> None:
    proposed = [0.66, 0.65, 0.67, 0.66, 0.68, 0.64]
    # listed first, but the proposed (AAE, gender + speaker) row is the reference: 6 repeats all 0.02-0.07
    # below it -> exact two-sided sign-flip p = 2/64; the AE row is +-0.01 around it -> p = 1
    stl = make_repeats(tmp_path / "stl", STL_LOSO, [u - 0.02 - 0.01 * i for i, u in enumerate(proposed)])
    ae = make_repeats(tmp_path / "ae", AE_LOSO, [u + d for u, d in zip(proposed, [0.01, -0.01] * 3)])
    mtl = make_repeats(tmp_path / "mtl", PROPOSED_LOSO, proposed)
    # a 10-fold run in the same report is another protocol: not compared with the LOSO rows
    other = make_repeats(tmp_path / "tenfold", {**PROPOSED_LOSO, "data": {**PROPOSED_LOSO["data"], "scheme": "10fold"}},
                         [0.9] * 6)
    markdown = Path(report([str(stl), str(ae), str(mtl), str(other)], str(tmp_path / "out"))).read_text()
    header = table_rows(markdown, "experiment")[0]
    ua = {name: dict(zip(header, table_rows(markdown, name)[0]))["UA (%)"] for name in ("stl", "ae", "mtl", "tenfold")}
    # mtl: 0.66 + 0.01 * (0, -1, 1, 0, 2, -2) -> std 0.01 * sqrt(10 / 5); stl: mtl - 0.02 .. 0.07, mean 0.615
    # two rows tested against mtl: Holm multiplies the smaller p by 2 (2/64 -> 0.0625), so no mark survives
    assert ua == {"stl": "61.5 ± 2.4", "ae": "66.0 ± 2.4", "mtl": "66.0 ± 1.4", "tenfold": "90.0 ± 0.0"}
    assert ("\\* UA differs from the reference row **mtl** with p < 0.05: two-sided exact sign-flip test of the "
            "mean paired difference, pairing per repeat (fold-averaged) scores by repeat") in markdown
    assert "2 rows are tested against it, so the marks use Holm-adjusted p over those 2 tests" in markdown
    # stl - mtl: -0.02 .. -0.07, mean -0.045, sd 0.018708, half width t(0.975, 5) * sd / sqrt(6) = 0.019633
    assert "- stl: -4.50 pp, 95 % CI [-6.46, -2.54], p = 0.0312 (Holm 0.0625) over 6 repeats" in markdown
    # ae - mtl: +-0.01 alternating, mean 0, sd 0.01 * sqrt(6 / 5), half width 0.011492
    assert "- ae: +0.00 pp, 95 % CI [-1.15, +1.15], p = 1 (Holm 1) over 6 repeats" in markdown
    assert markdown.count("differs from the reference row") == 1  # the 10-fold row is alone in its protocol
    # one test alone is not adjusted: stl against mtl is marked
    markdown = Path(report([str(stl), str(mtl)], str(tmp_path / "out2"))).read_text()
    assert dict(zip(header, table_rows(markdown, "stl")[0]))["UA (%)"] == "61.5 ± 2.4 *"
    assert "- stl: -4.50 pp, 95 % CI [-6.46, -2.54], p = 0.0312 over 6 repeats \\*" in markdown
    assert "Holm" not in markdown


def write_sweep(root: Path, param: str, summaries: dict) -> Path:
    """``root/sweep.json`` over ``param`` and one ``summary.json`` per value (``{value: summary}``)."""
    settings = []
    for value, summary in summaries.items():
        name = f"{param}={json.dumps(value)}"
        (root / name).mkdir(parents=True)
        (root / name / "summary.json").write_text(json.dumps(summary))
        settings.append({"values": {param: value}, "dir": name, "summary": f"{name}/summary.json"})
    (root / "sweep.json").write_text(json.dumps({"params": [param], "mode": "zip", "config_args": [],
                                                 "settings": settings}))
    return root


def emotion_summary(ua: float, eer: float | None) -> dict:
    """summary.json of 2 folds x 2 repeats with UA ua -+ 0.01 per repeat (std 0.01 * sqrt(2))."""
    runs = [{"fold": f, "repeat": r, "seed": r, "wa": ua, "ua": ua + (0.01 if r else -0.01),
             **({"eer": eer} if eer is not None else {})} for f in range(2) for r in range(2)]
    return summarize(runs)


def gender_summary(acc: float, std: float) -> dict:
    """summary.json of a model without the emotion task: no WA/UA, gender accuracy as EER is summarised."""
    return {"n_runs": 0, "folds": [0], "repeats": [0, 1], "complete_repeats": [0, 1], "n_repeats": 2,
            "complete": True, "missing": [], "gender_acc_mean": acc, "gender_acc_std": std,
            "gender_acc_repeats": 2, "per_repeat": [], "per_fold": [], "runs": []}


def test_figure4_panels_come_from_every_speaker_sweep(tmp_path: Path) -> None:
    from ser_mtl.analysis.figure4 import figure4
    from ser_mtl.analysis.report import discover

    emo = write_sweep(tmp_path / "f4a", "data.aux_speakers", {300: emotion_summary(0.66, 0.10),
                                                              0: emotion_summary(0.60, None),
                                                              100: emotion_summary(0.64, 0.15)})
    gender = write_sweep(tmp_path / "f4_gender", "data.speakers", {100: gender_summary(0.90, 0.02),
                                                                   300: gender_summary(0.95, 0.01),
                                                                   None: gender_summary(0.97, 0.01)})
    fig, notes = figure4(discover([str(emo), str(gender)]))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["(a) emotion recognition", "(b) gender identification", "(d) speaker verification"]

    def plotted(ax) -> list[tuple[str, list, list]]:
        return [(c.get_label(), list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata())) for c in ax.containers]

    [(label, x, y)] = plotted(fig.axes[0])  # sorted by the number of speakers
    assert label == "f4a (data.aux_speakers)" and x == [0, 100, 300] and y == pytest.approx([60.0, 64.0, 66.0])
    assert plotted(fig.axes[1]) == [("f4_gender (data.speakers)", [100, 300], pytest.approx([90.0, 95.0]))]
    assert plotted(fig.axes[2]) == [("f4a (data.aux_speakers)", [100, 300], pytest.approx([15.0, 10.0]))]
    # error bars: std over repeats in percent (UA: 0.01 * sqrt(2)); gender: the summaries' std
    segments = fig.axes[0].containers[0].lines[2][0].get_segments()  # one vertical bar per point
    assert [s[1][1] - s[0][1] for s in segments] == pytest.approx([2 * 100 * 0.01 * 2 ** 0.5] * 3)
    assert notes == ["Figure 4: f4_gender setting data.speakers=null is not a number of speakers; not plotted",
                     ("Figure 4 (c) speaker identification: no speaker-count sweep has speaker_acc in its "
                     "summaries; panel left out")]
    markdown = Path(report([str(emo), str(gender)], str(tmp_path / "out"))).read_text()
    assert "## Number of speakers (paper Figure 4)" in markdown and "](fig4_speakers.png)" in markdown
    assert "- Figure 4 (c) speaker identification: no speaker-count sweep has speaker_acc" in markdown
    assert_png(tmp_path / "out" / "fig4_speakers.png")
    row = table_rows(markdown, "100")[1]  # the gender sweep's table (second): no UA, its accuracy instead
    assert row[1:] == ["1×2", "–", "–", "–", "90.0 ± 2.0"]
    # the emotion sweep's settings are tested against its first row; the gender sweep, without UA, is not
    assert markdown.count("differs from the reference row") == 1
    assert ("- data.aux_speakers=0: -6.00 pp, 95 % CI [-6.00, -6.00], p = 0.5 (Holm 1) over 2 repeats (fewer than 6: "
            "p < 0.05 is out of reach)") in markdown
