"""``ser-mtl compare`` on constructed cv folders whose differences and p-values are known in closed form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ser_mtl.analysis.compare import (
    CompareError,
    compare_dirs,
    compare_runs,
    paired_statistics,
    table_significance,
)
from ser_mtl.cli import main

T_975_5 = 2.5705818366147395  # t quantile 0.975 with 5 degrees of freedom (printed tables: 2.571)
T_975_1 = 12.706204736174698  # ... with 1 degree of freedom (12.71)


def write_cv(root: Path, scores: dict[tuple[int, int], dict[str, float]]) -> Path:
    """``root/fold{f}_rep{r}/metrics.json`` with the given metrics per (fold, repeat)."""
    for (fold, rep), metrics in scores.items():
        run_dir = root / f"fold{fold}_rep{rep}"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({"fold": fold, "repeat": rep, "seed": rep, **metrics}))
    return root


# 3 folds x 2 repeats; B beats A in every run by 0.01 .. 0.06 (UA) and by 0.02 in WA
UA_A = {(f, r): 0.50 + 0.01 * f + 0.02 * r for f in range(3) for r in range(2)}
GAIN = {(0, 0): 0.01, (1, 0): 0.02, (2, 0): 0.03, (0, 1): 0.04, (1, 1): 0.05, (2, 1): 0.06}


def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    a = write_cv(tmp_path / "stl", {k: {"ua": v, "wa": v + 0.05} for k, v in UA_A.items()})
    b = write_cv(tmp_path / "mtl", {k: {"ua": v + GAIN[k], "wa": v + 0.07} for k, v in UA_A.items()})
    return a, b


def test_six_positive_pairs_give_the_exact_p_values_and_the_t_interval(tmp_path: Path) -> None:
    a, b = two_folders(tmp_path)
    [comp] = compare_dirs([str(a), str(b)])["comparisons"]
    run = comp["metrics"]["ua"]["per_run"]
    diffs = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    assert run["n"] == 6 and run["n_positive"] == 6
    # exact two-sided: only the all-plus (and, mirrored, the all-minus) of the 2^6 sign patterns is as extreme
    assert run["wilcoxon"]["p"] == pytest.approx(2 / 64) and run["wilcoxon"]["statistic"] == 0.0
    assert run["sign_flip"]["p"] == pytest.approx(2 / 64) and run["sign_flip"]["exact"]
    mean = sum(diffs) / 6  # 0.035
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 5)  # 0.018708
    assert run["mean_diff"] == pytest.approx(0.035)
    assert run["ci95"] == pytest.approx([mean - T_975_5 * sd / math.sqrt(6), mean + T_975_5 * sd / math.sqrt(6)])
    assert run["ci95"][0] == pytest.approx(0.015367, abs=1e-6)
    # per repeat: fold averages differ by 0.02 (repeat 0) and 0.05 (repeat 1): n = 2, untestable at 5 %
    rep = comp["metrics"]["ua"]["per_repeat"]
    assert [p["b"] - p["a"] for p in rep["pairs"]] == pytest.approx([0.02, 0.05])
    assert rep["mean_diff"] == pytest.approx(0.035) and rep["sign_flip"]["p"] == pytest.approx(0.5)
    assert "cannot be reached" in rep["notes"][0]
    half = T_975_1 * (0.03 / math.sqrt(2)) / math.sqrt(2)  # sd of {0.02, 0.05} = 0.03 / sqrt(2)
    assert rep["ci95"] == pytest.approx([0.035 - half, 0.035 + half])
    assert not comp["verdict"]["significant"] and comp["decision"]["unit"] == "per_repeat"
    # WA: +0.02 in every run, zero variance: the interval collapses onto it
    wa = comp["metrics"]["wa"]["per_run"]
    assert wa["mean_diff"] == pytest.approx(0.02) and wa["ci95"] == pytest.approx([0.02, 0.02])
    assert wa["sign_flip"]["p"] == pytest.approx(2 / 64)


def test_six_repeats_make_the_per_repeat_verdict_significant_and_mixed_signs_do_not() -> None:
    # one fold, 6 repeats: per-run and per-repeat pairs coincide
    a = [{"fold": 0, "repeat": r, "ua": 0.6} for r in range(6)]
    better = [{"fold": 0, "repeat": r, "ua": 0.6 + 0.01 * (r + 1)} for r in range(6)]
    result = compare_runs(a, better, metrics=("ua",))
    assert result["verdict"] == {"significant": True, "p": pytest.approx(2 / 64), "better": "other",
                                 "text": "the other is better (p = 0.0312 < 0.05)"}
    # signs + + - + - +, |d| ranks 1..6: W- = 3 + 5 = 8; 22 of the 64 subsets of {1..6} sum to <= 8
    # (sums 0..8: 1+1+1+2+2+3+4+4+4), so the exact two-sided p = 2 * 22/64
    mixed = [{"fold": 0, "repeat": r, "ua": 0.6 + s * 0.01 * (r + 1)} for r, s in enumerate([1, 1, -1, 1, -1, 1])]
    stats = compare_runs(a, mixed, metrics=("ua",))["metrics"]["ua"]["per_repeat"]
    subsets = [sum(i + 1 for i in range(6) if (m >> i) & 1) for m in range(64)]
    assert sum(s <= 8 for s in subsets) == 22
    assert stats["wilcoxon"]["statistic"] == 8.0 and stats["wilcoxon"]["p"] == pytest.approx(44 / 64)
    # sign-flip: the differences are 0.01 * signed ranks, observed sum 21 - 2 * 8 = 5, mean 0.05 / 6;
    # two-sided p = share of the 2^6 flips with |signed sum| >= 5 (here the same 44/64)
    assert stats["mean_diff"] == pytest.approx(0.05 / 6)
    sums = [sum((i + 1) * (1 if (m >> i) & 1 else -1) for i in range(6)) for m in range(64)]
    assert stats["sign_flip"]["p"] == pytest.approx(sum(abs(s) >= 5 for s in sums) / 64) == pytest.approx(44 / 64)
    worse = [{"fold": 0, "repeat": r, "eer": 0.2 + 0.01 * (r + 1)} for r in range(6)]
    ref = [{"fold": 0, "repeat": r, "eer": 0.2} for r in range(6)]
    assert compare_runs(ref, worse, primary="eer")["verdict"]["better"] == "reference"  # higher EER is worse


def test_identical_folders_give_zero_and_p_one(tmp_path: Path, capsys) -> None:
    a, _ = two_folders(tmp_path)
    copy = write_cv(tmp_path / "copy", {k: {"ua": v, "wa": v + 0.05} for k, v in UA_A.items()})
    [comp] = compare_dirs([str(a), str(copy)])["comparisons"]
    for unit in ("per_run", "per_repeat"):
        s = comp["metrics"]["ua"][unit]
        assert s["mean_diff"] == 0.0 and s["ci95"] == [0.0, 0.0] and s["n_zero"] == s["n"]
        assert s["wilcoxon"]["p"] == 1.0 and s["sign_flip"]["p"] == 1.0
        assert s["notes"][0].startswith("all differences are zero")
    assert comp["verdict"]["text"] == "no significant difference (p = 1)"
    assert paired_statistics([0.5, 0.6], [0.5, 0.6])["wilcoxon"]["statistic"] is None


def test_unmatched_runs_are_listed_and_the_json_is_written(tmp_path: Path, capsys) -> None:
    a, b = two_folders(tmp_path)
    write_cv(b, {(3, 0): {"ua": 0.9, "wa": 0.9}})  # a fold 3 (repeat 0) only in mtl
    (a / "fold1_rep1" / "metrics.json").unlink()  # fold 1 of repeat 1 only in mtl
    out = tmp_path / "cmp" / "cmp.json"
    main(["compare", str(a), str(b), "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    [comp] = result["comparisons"]
    assert comp["unmatched"] == {"only_a": [], "only_b": [[3, 0], [1, 1]]}
    run = comp["metrics"]["ua"]["per_run"]  # gains 0.01, 0.02, 0.03, 0.04, 0.06: mean 0.032, p = 2/2^5
    assert run["n"] == 5 and run["mean_diff"] == pytest.approx(0.032)
    assert run["sign_flip"]["p"] == pytest.approx(2 / 32) and run["wilcoxon"]["p"] == pytest.approx(2 / 32)
    # per repeat over the common folds 0-2: repeat 1 lacks fold 1 in stl, so only repeat 0 remains
    rep = comp["metrics"]["ua"]["per_repeat"]
    assert rep["left_out_repeats"] == [1] and rep["n"] == 1 and "at least 2" in rep["error"]
    assert rep["pairs"][0]["b"] - rep["pairs"][0]["a"] == pytest.approx(0.02) and rep["pairs"][0]["n_folds"] == 3
    assert f"only in {b} (not paired): fold 3 repeat 0, fold 1 repeat 1" in printed
    assert "mtl vs stl" in printed and "+3.20" in printed and "0.0625" in printed
    assert comp["verdict"]["text"].startswith("not testable") and not comp["verdict"]["significant"]


def test_missing_metrics_and_too_few_pairs_are_clear_errors(tmp_path: Path, capsys) -> None:
    a = write_cv(tmp_path / "a", {(0, 0): {"ua": 0.5, "wa": 0.5, "eer": 0.2}, (1, 0): {"ua": 0.6, "wa": 0.6}})
    b = write_cv(tmp_path / "b", {(0, 0): {"ua": 0.55, "wa": 0.5}, (1, 0): {"ua": 0.62, "wa": 0.6},
                                  (2, 0): {"ua": 0.7, "wa": 0.7}})
    comp = compare_dirs([str(a), str(b)])["comparisons"][0]
    assert "eer" not in comp["metrics"] and comp["skipped"] == ["eer: not in both folders' runs"]
    assert comp["metrics"]["ua"]["per_run"]["mean_diff"] == pytest.approx(0.035)
    one = write_cv(tmp_path / "one", {(0, 0): {"ua": 0.5, "wa": 0.5}})
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(one), str(b)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"{b} against {one}: metric 'ua' over (fold, repeat) runs: 1 matched pair(s)" in err
    assert "needs at least 2" in err
    with pytest.raises(SystemExit):
        main(["compare", str(a), str(b), "--metric", "gender_acc"])
    assert "metric 'gender_acc': no matched runs (neither has it)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(a)])
    assert "at least two cv folders" in capsys.readouterr().err


def write_record(root: Path, base_seed: int = 0, **data) -> None:
    """``root/cv.json`` as ``ser-mtl cv`` writes it; ``data`` overrides the resolved ``data.*`` settings."""
    resolved = {"data": {"corpus": "iemocap", "task": "categorical", "scheme": "loso", "target_corpus": None,
                         "seed": 0, **data}, "model": {"tasks": ["emotion"]}}
    (root / "cv.json").write_text(json.dumps({"config_args": [], "base_seed": base_seed, "config_files": {},
                                              "label": None, "resolved": resolved}))


def test_folders_of_different_experiments_are_refused_naming_the_setting(tmp_path: Path, capsys) -> None:
    a, b = two_folders(tmp_path)
    write_record(a)
    write_record(b, scheme="loso_session")
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(a), str(b)])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert (f"{b}: data.scheme is loso_session, {a} has loso: their (fold, repeat) runs are different "
            "experiments; pass --allow_mismatch data.scheme to compare them anyway") in captured.err
    # the deliberate case: the same numbers as without the check, and a note saying what differed
    main(["compare", str(a), str(b), "--allow_mismatch", "data.scheme"])
    assert f"mtl vs stl: data.scheme is loso_session, {a} has loso: compared all the same" in capsys.readouterr().out
    [comp] = compare_dirs([str(a), str(b)], allow_mismatch=["data.scheme"])["comparisons"]
    assert comp["metrics"]["ua"]["per_run"]["mean_diff"] == pytest.approx(0.035)
    for setting, other in (("data.seed", {"seed": 1}), ("base_seed", {"base_seed": 7}),
                           ("data.corpus", {"corpus": "msp_improv"}), ("data.task", {"task": "dimensional"})):
        write_record(b, **other)
        with pytest.raises(CompareError, match=rf"^{b}: {setting} is \S+, {a} has \S+: .* --allow_mismatch {setting} "):
            compare_dirs([str(a), str(b)])
        assert compare_dirs([str(a), str(b)], allow_mismatch=[setting])["comparisons"][0]["settings"]
    write_record(b, scheme="loso_session", seed=3)  # two differences: both must be allowed
    with pytest.raises(CompareError, match="data.seed is 3"):
        compare_dirs([str(a), str(b)], allow_mismatch=["data.scheme"])
    assert len(compare_dirs([str(a), str(b)], allow_mismatch=["data.scheme", "data.seed"])
               ["comparisons"][0]["settings"]) == 2
    write_record(b)  # the same settings: nothing to note
    assert compare_dirs([str(a), str(b)])["comparisons"][0]["settings"] == []


def test_folders_without_cv_json_or_a_setting_compare_unchecked_with_a_note(tmp_path: Path, capsys) -> None:
    a, b = two_folders(tmp_path)  # made by hand: no cv.json
    write_record(b, scheme="loso_session")
    main(["compare", str(a), str(b)])
    printed = capsys.readouterr().out
    assert f"mtl vs stl: {a}: no cv.json, so its data and seed settings are not checked" in printed
    assert "+3.50" in printed  # per-run mean difference, as without cv.json
    write_record(a)
    (b / "cv.json").write_text(json.dumps({"base_seed": 0, "resolved": None}))  # an older record: no data.*
    [comp] = compare_dirs([str(a), str(b)])["comparisons"]
    unchecked = "data.corpus, data.task, data.scheme, data.target_corpus, data.seed"
    assert comp["settings"] == [f"{unchecked} not in both cv.json files: not checked"]
    # LightningCLI's class_path/init_args form is read through
    (b / "cv.json").write_text(json.dumps({"base_seed": 0, "resolved": {"data": {
        "class_path": "ser_mtl.data.SERDataModule", "init_args": {"corpus": "iemocap", "task": "categorical",
                                                                  "scheme": "loso_session", "target_corpus": None,
                                                                  "seed": 0}}}}))
    with pytest.raises(CompareError, match="data.scheme is loso_session"):
        compare_dirs([str(a), str(b)])


def test_the_footnote_says_exact_only_when_the_sign_flip_test_was_exact() -> None:
    ref = [{"fold": 0, "repeat": r, "ua": 0.6} for r in range(20)]
    few = [{"fold": 0, "repeat": r, "ua": 0.61} for r in range(6)]  # 6 repeats: all 2^6 sign flips
    many = [{"fold": 0, "repeat": r, "ua": 0.6 + 0.001 * (r + 1)} for r in range(20)]  # 20: random flips
    _, lines = table_significance([("ref", ref), ("few", few)], 0)
    assert "two-sided exact sign-flip test of the mean paired difference" in lines[0]
    flags, lines = table_significance([("ref", ref), ("few", few), ("many", many)], 0)
    assert "exact sign-flip" not in lines[0] and "exact up to 16 repeats, else 100,000 seeded random flips" in lines[0]
    assert flags == [False, True, True] and "over 20 repeats \\*" in lines[-1]


def test_the_printed_table_says_when_sign_flip_p_values_are_not_exact(tmp_path: Path, capsys) -> None:
    a = write_cv(tmp_path / "a", {(f, 0): {"ua": 0.5, "wa": 0.5} for f in range(17)})
    b = write_cv(tmp_path / "b", {(f, 0): {"ua": 0.5 + 0.001 * (f + 1), "wa": 0.5} for f in range(17)})
    main(["compare", str(a), str(b)])
    assert "sign-flip p of over 16 pairs: 100,000 seeded random flips, not exact" in capsys.readouterr().out
    c = write_cv(tmp_path / "c", {(f, 0): {"ua": 0.5 + 0.001 * (f + 1), "wa": 0.5} for f in range(16)})
    main(["compare", str(a), str(c)])
    assert "not exact" not in capsys.readouterr().out


def test_no_test_footnote_where_no_row_could_be_tested() -> None:
    ref = [{"fold": 0, "repeat": 0, "ua": 0.6}]  # one repeat: nothing can be tested
    flags, lines = table_significance([("ref", ref), ("other", [{"fold": 0, "repeat": 0, "ua": 0.7}])], 0)
    assert flags == [False, False] and len(lines) == 1
    assert lines[0].startswith("No significance test of UA against **ref**: other: not testable")
    assert "p < 0.05" not in lines[0] and "\\*" not in lines[0]
