"""Is one cross-validation better than another? Paired differences and paired tests (``ser-mtl compare``).

Runbook::

    ser-mtl compare runs/stl runs/mtl                      # MTL - STL, UA and WA (and EER, gender/speaker acc)
    ser-mtl compare runs/stl runs/mtl runs/ae --out cmp.json --metric ua

Every later folder is compared with the first (the reference): differences are *later minus first*
(positive UA: the later is better; for ``eer`` lower is better). Runs pair by ``(fold, repeat)``: with
the cv runner's common seeds a pair shares test speakers and seed. Two pairing units:

* **per repeat** (the verdict's unit, and ``ser-mtl report``'s marks): each repeat's plain average
  over the folds both folders have, as in ``summary.json``; a repeat counts only when both have all
  of them. These independent units are behind the tables' ``± std``: the test asks whether the
  difference exceeds the repeat-to-repeat (seed) variation on these folds, not other speakers or corpora.
* **per run**: every matched ``(fold, repeat)`` pair. Pairs of one fold share its test speakers, of
  one repeat its seed: not independent, so the p-values are optimistic; shown for detail only.

Per unit and metric: mean difference, 95 % t interval (``mean ± t_{0.975, n-1} · s / sqrt(n)``),
Wilcoxon's signed-rank test (exact for n <= 50, zeros dropped) and the sign-flip permutation test of
the mean (exact over all 2^n flips for n <= 16, else 100 000 seeded random flips), both two-sided.
The verdict uses the sign-flip test: it tests the mean the interval is about, and zeros need no
special rule. Below 6 pairs no exact two-sided test reaches p < 0.05 (the smallest p is 2 / 2^n).

Runs in only one folder are listed under ``unmatched``, never dropped silently. A later folder whose
``cv.json`` differs from the first's in a ``PAIRING_SETTINGS`` entry is refused unless
``--allow_mismatch`` names it; one without ``cv.json`` (or the setting) is compared unchecked, with a note.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ser_mtl.analysis.paper_results import config_section
from ser_mtl.analysis.summary import SummaryError, collect_runs, read_record
from ser_mtl.tasks import SCORES

COMPARED_METRICS = ("ua", *(key for key in SCORES if key != "ua"))  # the registry's scores (ser_mtl/tasks.py)
LOWER_IS_BETTER = frozenset(key for key, score in SCORES.items() if not score.higher_is_better)  # eer, age_mae
AUTO_METRIC = "auto"  # ua where the runs have it, else the mean CCC of dimensional emotion, else the first present
UNITS = ("per_repeat", "per_run")
DECISION_UNIT = "per_repeat"
DECISION_TEST = "sign_flip"
ALPHA = 0.05
EXACT_FLIPS_UP_TO = 16
RANDOM_FLIPS = 100_000
UNIT_TEXT = {"per_repeat": "per repeat (fold-averaged)", "per_run": "per run (fold, repeat)"}
# cv.json settings that make one (fold, repeat) the same experiment: data.* of the resolved configuration
PAIRING_SETTINGS = ("data.corpus", "data.task", "data.scheme", "data.target_corpus", "data.seed", "base_seed")
_ABSENT = object()


class CompareError(SummaryError):
    """Two cross-validations that cannot be compared; the message names the folders and why."""


def _value(run: dict[str, Any], metric: str) -> float | None:
    value = run.get(metric)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        where = f"run {run.get('dir', '?')} (fold {run.get('fold')}, repeat {run.get('repeat')})"
        raise CompareError(f"{where}: expected {metric!r} to be a finite number (a fraction), got {value!r}")
    return float(value)


def paired_runs(runs_a: list[dict], runs_b: list[dict], metric: str) -> tuple[list[dict], dict[str, list]]:
    """Pairs ``{fold, repeat, a, b}`` of the runs of both lists that have ``metric``, sorted by
    (repeat, fold), and the unmatched keys: ``only_a``/``only_b`` as ``[fold, repeat]`` lists."""
    by_a = {(r["fold"], r["repeat"]): r for r in runs_a if _value(r, metric) is not None}
    by_b = {(r["fold"], r["repeat"]): r for r in runs_b if _value(r, metric) is not None}
    order = lambda ks: [list(k) for k in sorted(ks, key=lambda k: (k[1], k[0]))]
    pairs = [{"fold": f, "repeat": r, "a": _value(by_a[(f, r)], metric), "b": _value(by_b[(f, r)], metric)}
             for f, r in order(by_a.keys() & by_b.keys())]
    return pairs, {"only_a": order(by_a.keys() - by_b.keys()), "only_b": order(by_b.keys() - by_a.keys())}


def repeat_pairs(runs_a: list[dict], runs_b: list[dict], metric: str) -> tuple[list[dict], list[int]]:
    """Per repeat: the fold averages ``{repeat, a, b, n_folds}`` of the repeats in which both lists
    have ``metric`` for every fold that both lists have; and the repeats left out (some fold missing).
    A fold only one list has does not spoil the repeats: both averages are over the same folds."""
    folds = ({r["fold"] for r in runs_a if _value(r, metric) is not None}
             & {r["fold"] for r in runs_b if _value(r, metric) is not None})
    pairs, left_out = [], []
    for rep in sorted({r["repeat"] for r in [*runs_a, *runs_b]}):
        a = {r["fold"]: _value(r, metric) for r in runs_a if r["repeat"] == rep}
        b = {r["fold"]: _value(r, metric) for r in runs_b if r["repeat"] == rep}
        if all(a.get(f) is not None and b.get(f) is not None for f in folds) and folds:
            pairs.append({"repeat": rep, "n_folds": len(folds), "a": math.fsum(a[f] for f in folds) / len(folds),
                          "b": math.fsum(b[f] for f in folds) / len(folds)})
        elif any(v is not None for v in [*a.values(), *b.values()]):
            left_out.append(rep)
    return pairs, left_out


def paired_statistics(a: list[float], b: list[float]) -> dict[str, Any]:
    """Mean difference ``b - a`` with its 95 % t interval, Wilcoxon's and the sign-flip test (two-sided).

    ``CompareError`` for fewer than 2 pairs. All differences zero: difference 0, interval [0, 0],
    both p-values 1.0 and a note (Wilcoxon's statistic is undefined there).
    """
    if len(a) != len(b):
        raise ValueError(f"paired_statistics: {len(a)} values against {len(b)}")
    n = len(a)
    if n < 2:
        raise CompareError(f"{n} matched pair(s): a paired comparison needs at least 2")
    # rounded so that equal scores give exactly equal differences (ties and zeros for the rank test)
    diff = np.round(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64), 12)  # (n,)
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    result: dict[str, Any] = {
        "n": n, "mean_a": float(np.mean(a)), "mean_b": float(np.mean(b)), "mean_diff": mean, "sd_diff": sd,
        "ci95": [mean - half, mean + half], "n_positive": int((diff > 0).sum()), "n_negative": int((diff < 0).sum()),
        "n_zero": int((diff == 0).sum()), "notes": [],
    }
    if not diff.any():
        result["wilcoxon"] = {"statistic": None, "p": 1.0, "method": "none"}
        result["sign_flip"] = {"p": 1.0, "exact": True, "n_resamples": 2 ** min(n, EXACT_FLIPS_UP_TO)}
        result["notes"].append("all differences are zero: the two are identical on these pairs")
        return result
    method = "exact" if (diff != 0).sum() <= 50 else "approx"
    test = stats.wilcoxon(diff, zero_method="wilcox", method=method, alternative="two-sided")
    result["wilcoxon"] = {"statistic": float(test.statistic), "p": float(test.pvalue), "method": method}
    exact = n <= EXACT_FLIPS_UP_TO
    flips = stats.permutation_test(
        (diff,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", vectorized=True,
        n_resamples=np.inf if exact else RANDOM_FLIPS, alternative="two-sided", rng=np.random.default_rng(0))
    result["sign_flip"] = {"p": float(flips.pvalue), "exact": exact,
                           "n_resamples": 2 ** n if exact else RANDOM_FLIPS}
    if n < 6:
        result["notes"].append(f"{n} pairs: the smallest possible two-sided p is 2/2^{n} = {2 / 2 ** n:.3g}, "
                               f"so p < {ALPHA} cannot be reached")
    return result


def compare_runs(runs_a: list[dict], runs_b: list[dict], metrics: tuple[str, ...] = COMPARED_METRICS,
                 primary: str = "ua") -> dict[str, Any]:
    """Both pairing units for each metric present in both run lists; ``CompareError`` when ``primary``
    has fewer than 2 matched runs. Keys: ``metrics`` {metric: {unit: statistics or {"error": ...}}},
    ``unmatched`` (of ``primary``), ``skipped`` (metrics absent from one list) and ``verdict``."""
    out: dict[str, Any] = {"metrics": {}, "skipped": [], "decision": {"unit": DECISION_UNIT, "test": DECISION_TEST,
                                                                      "alpha": ALPHA, "metric": primary}}
    for metric in dict.fromkeys((primary, *metrics)):
        pairs, unmatched = paired_runs(runs_a, runs_b, metric)
        if metric == primary:
            out["unmatched"] = unmatched
        if not pairs:
            if metric == primary:
                has = [name for name, runs in (("reference", runs_a), ("other", runs_b))
                       if any(_value(r, metric) is not None for r in runs)]
                why = (f"only the {has[0]} has it" if len(has) == 1 else "no (fold, repeat) run is in both"
                       if has else "neither has it")
                raise CompareError(f"metric {metric!r}: no matched runs ({why})")
            if any(_value(r, metric) is not None for r in [*runs_a, *runs_b]):
                out["skipped"].append(f"{metric}: not in both folders' runs")
            continue
        try:
            per_run = {**paired_statistics([p["a"] for p in pairs], [p["b"] for p in pairs]), "pairs": pairs}
        except CompareError as err:
            if metric == primary:
                raise CompareError(f"metric {metric!r} over (fold, repeat) runs: {err}") from err
            out["skipped"].append(f"{metric}: {err}")
            continue
        reps, left_out = repeat_pairs(runs_a, runs_b, metric)
        try:
            per_repeat = {**paired_statistics([p["a"] for p in reps], [p["b"] for p in reps]), "pairs": reps}
        except CompareError as err:
            per_repeat = {"n": len(reps), "error": f"{err} (complete repeats in both)", "pairs": reps}
        per_repeat["left_out_repeats"] = left_out
        out["metrics"][metric] = {"per_run": per_run, "per_repeat": per_repeat}
    out["verdict"] = verdict(out["metrics"][primary][DECISION_UNIT], primary)
    return out


def verdict(result: dict[str, Any], metric: str) -> dict[str, Any]:
    """``{"significant", "p", "better", "text"}`` of one unit's statistics (the decision rule)."""
    if "error" in result:
        return {"significant": False, "p": None, "better": None, "text": f"not testable: {result['error']}"}
    p = result[DECISION_TEST]["p"]
    diff = result["mean_diff"]
    better = None if diff == 0 else ("other" if (diff > 0) != (metric in LOWER_IS_BETTER) else "reference")
    significant = p < ALPHA and better is not None
    text = (f"the {better} is better (p = {p:.3g} < {ALPHA})" if significant
            else f"no significant difference (p = {p:.3g})")
    return {"significant": significant, "p": p, "better": better, "text": text}


def table_significance(rows: list[tuple[str, list[dict]]], reference: int,
                       metric: str = "ua") -> tuple[list[bool], list[str]]:
    """Which rows ``(name, runs as in summary.json)`` of a table differ from its reference row in ``metric``,
    by the decision rule with Holm's adjustment over the table's tests: one flag per row, and footnote lines
    (the test, then per other row its difference, interval and p, or why it was not tested; none when the
    reference or every other row lacks ``metric``)."""
    ref_name, ref_runs = rows[reference]
    flags = [False] * len(rows)
    has = [any(_value(r, metric) is not None for r in runs) for _, runs in rows]
    if not has[reference] or sum(has) < 2:  # e.g. a sweep of a model without the emotion task
        return flags, []
    lines, tested = [], []
    for i, (name, runs) in enumerate(rows):
        if i == reference:
            continue
        try:
            result = compare_runs(ref_runs, runs, metrics=(metric,), primary=metric)
            s = result["metrics"][metric][DECISION_UNIT]
            if "error" in s:
                raise CompareError(s["error"])
        except CompareError as err:
            lines.append(f"- {name}: not testable ({err})")
            continue
        tested.append((i, name, s, result["verdict"]["significant"], len(lines)))
        lines.append("")
    if not tested:  # no footnote about a test that never ran: only why each row could not be tested
        return flags, [f"No significance test of {metric.upper()} against **{ref_name}**: "
                       + "; ".join(line[2:] for line in lines)]
    m, running = len(tested), 0.0
    for rank, (i, name, s, significant, at) in enumerate(sorted(tested, key=lambda t: t[2][DECISION_TEST]["p"])):
        p = s[DECISION_TEST]["p"]
        running = max(running, min(1.0, (m - rank) * p))  # Holm's step-down adjustment over the table's m tests
        flags[i] = significant and running < ALPHA
        unit = " pp" if SCORES[metric].percent else ""
        lines[at] = (f"- {name}: {_pp(s['mean_diff'], metric)}{unit}, 95 % CI [{_pp(s['ci95'][0], metric)}, "
                     f"{_pp(s['ci95'][1], metric)}], "
                     f"p = {p:.3g}" + (f" (Holm {running:.3g})" if m > 1 else "") + f" over {s['n']} repeats"
                     + (" \\*" if flags[i] else "") + (" (fewer than 6: p < 0.05 is out of reach)" if s["n"] < 6 else ""))
    exact = all(t[2][DECISION_TEST]["exact"] for t in tested)
    test = ("exact sign-flip test" if exact else f"sign-flip test (exact up to {EXACT_FLIPS_UP_TO} repeats, "
            f"else {RANDOM_FLIPS:,} seeded random flips)")
    holm = f"; {m} rows are tested against it, so the marks use Holm-adjusted p over those {m} tests" if m > 1 else ""
    return flags, [(f"\\* {metric.upper()} differs from the reference row **{ref_name}** with p < {ALPHA}: two-sided "
                    f"{test} of the mean paired difference, pairing {UNIT_TEXT[DECISION_UNIT]} scores by repeat "
                    f"over the folds both have (`ser-mtl compare`){holm}. Per row, row minus reference:"), "", *lines]


def reference_row(protocols: list[Any]) -> int:
    """The proposed model (an AAE with gender + speaker tasks; ``paper_results.Protocol``) where a
    table has one, else its first row."""
    return next((i for i, p in enumerate(protocols) if p is not None and p.arch == "aae" and p.aux == "both"), 0)


def group_significance(rows: list[tuple[str, list[dict], Any]],
                       groups: list[list[int]]) -> tuple[list[str | bool], list[str]]:
    """``table_significance`` per group of row indices (rows: name, runs, protocol), each group against
    its ``reference_row`` in its ``primary_metric`` (UA, else the mean CCC); per row the metric it differs in
    significantly (False where it does not), and the footnotes of every group of two or more rows."""
    flags: list[str | bool] = [False] * len(rows)
    notes: list[str] = []
    for group in (g for g in groups if len(g) > 1):
        reference = reference_row([rows[i][2] for i in group])
        metric = primary_metric(rows[group[reference]][1])
        marks, lines = table_significance([rows[i][:2] for i in group], reference, metric)
        for i, mark in zip(group, marks):
            flags[i] = metric if mark else False
        notes += ["", *lines]
    return flags, notes


def _setting(record: dict[str, Any], name: str) -> Any:
    """``base_seed`` or ``data.KEY`` of the resolved configuration in a ``cv.json`` record, else ``_ABSENT``."""
    section, _, key = name.rpartition(".")
    values = config_section(record.get("resolved") or {}, section) if section else record
    return values.get(key, _ABSENT)


def check_settings(reference: str, other: str, allow: frozenset[str] = frozenset()) -> list[str]:
    """``CompareError`` at the first ``PAIRING_SETTINGS`` entry (not in ``allow``) in which the two folders'
    ``cv.json`` differ; notes on what could not be checked and on allowed differences."""
    records = {d: read_record(d) for d in (reference, other)}
    if None in records.values():
        return [f"{d}: no cv.json, so its data and seed settings are not checked" for d, r in records.items()
                if r is None]
    notes, unknown = [], []
    for name in PAIRING_SETTINGS:
        ref, oth = _setting(records[reference], name), _setting(records[other], name)
        if ref is _ABSENT or oth is _ABSENT:
            unknown.append(name)
        elif ref != oth and name not in allow:
            raise CompareError(f"{other}: {name} is {oth}, {reference} has {ref}: their (fold, repeat) runs are "
                               f"different experiments; pass --allow_mismatch {name} to compare them anyway")
        elif ref != oth:
            notes.append(f"{name} is {oth}, {reference} has {ref}: compared all the same (--allow_mismatch)")
    return notes + ([f"{', '.join(unknown)} not in both cv.json files: not checked"] if unknown else [])


def primary_metric(runs: list[dict]) -> str:
    """What ``--metric auto`` decides on for a reference's runs: ``ua``, else ``ccc_mean``, else the first
    score of `COMPARED_METRICS` some run has."""
    present = [m for m in COMPARED_METRICS if any(r.get(m) is not None for r in runs)]
    return next((m for m in ("ua", "ccc_mean") if m in present), present[0] if present else "ua")


def compare_dirs(dirs: list[str], metric: str = AUTO_METRIC, allow_mismatch: list[str] | None = None) -> dict[str, Any]:
    """Each later cv folder against the first, after ``check_settings``; the JSON-ready result."""
    if len(dirs) < 2:
        raise CompareError(f"compare needs at least two cv folders (the reference first), got {len(dirs)}")
    if metric not in (*COMPARED_METRICS, AUTO_METRIC):
        raise CompareError(f"--metric {metric!r}: expected {AUTO_METRIC} or one of {', '.join(COMPARED_METRICS)}")
    runs = {d: collect_runs(d) for d in dirs}
    for d, found in runs.items():
        if not found:
            raise CompareError(f"{d}: no */metrics.json (finished runs) to compare")
    if metric == AUTO_METRIC:
        metric = primary_metric(runs[dirs[0]])
    reference = dirs[0]
    comparisons = []
    for other in dirs[1:]:
        settings = check_settings(reference, other, frozenset(allow_mismatch or ()))
        try:
            result = compare_runs(runs[reference], runs[other], primary=metric)
        except CompareError as err:
            raise CompareError(f"{other} against {reference}: {err}") from err
        comparisons.append({"reference": reference, "other": other, "settings": settings, **result})
    return {"difference": "other - reference (fractions, CCC or years as scored; positive = other higher)",
            "metric": metric,
            "units": {u: UNIT_TEXT[u] for u in UNITS}, "comparisons": comparisons}


def _pp(value: float, metric: str = "ua") -> str:
    """A difference as shown: percentage points for a fraction (``+1.25``), else in the score's own unit
    (``+0.031`` CCC, ``-1.20`` years)."""
    score = SCORES.get(metric)
    if score is None or score.percent:
        return f"{100 * value:+.2f}"
    return f"{value:+.3f}" if not score.unit else f"{value:+.2f}"


def format_comparison(result: dict[str, Any]) -> str:
    """The printed table: one line per (comparison, metric, unit), then notes and the verdicts."""
    head = (f"{'other vs reference':<36} {'metric':<11} {'unit':<27} {'n':>4} {'diff (pp)':>9} "
            f"{'95% CI (pp)':>17} {'Wilcoxon p':>10} {'sign-flip p':>11}")
    lines = [head, "-" * len(head)]
    notes, random_flips = [], False
    for comp in result["comparisons"]:
        name = f"{Path(comp['other']).name} vs {Path(comp['reference']).name}"
        for metric, entry in comp["metrics"].items():
            for unit in UNITS:
                s = entry[unit]
                if "error" in s:
                    lines.append(f"{name:<36} {metric:<11} {UNIT_TEXT[unit]:<27} {s['n']:>4}   {s['error']}")
                    continue
                ci = f"[{_pp(s['ci95'][0], metric)}, {_pp(s['ci95'][1], metric)}]"
                lines.append(f"{name:<36} {metric:<11} {UNIT_TEXT[unit]:<27} {s['n']:>4} {_pp(s['mean_diff'], metric):>9} "
                             f"{ci:>17} {s['wilcoxon']['p']:>10.4g} {s['sign_flip']['p']:>11.4g}")
                notes += [f"{name}, {metric} {UNIT_TEXT[unit]}: {n}" for n in s["notes"]]
                random_flips |= not s["sign_flip"]["exact"]
        for side, folder in (("only_a", comp["reference"]), ("only_b", comp["other"])):
            if keys := comp["unmatched"][side]:
                notes.append(f"only in {folder} (not paired): "
                             + ", ".join(f"fold {f} repeat {r}" for f, r in keys))
        if left := comp["metrics"][result["metric"]]["per_repeat"]["left_out_repeats"]:
            notes.append(f"{name}: repeat(s) {', '.join(map(str, left))} lack some fold in one folder; "
                         "left out of the per-repeat pairs")
        notes += [f"{name}: {s}" for s in [*comp["settings"], *comp["skipped"]]]
    lines += ["", (f"difference = other - reference, percentage points (CCC and years: their own units); verdict: "
              f"two-sided sign-flip test on "
              f"{UNIT_TEXT[DECISION_UNIT]} {result['metric']}, p < {ALPHA}")]
    lines += [f"  {Path(c['other']).name} vs {Path(c['reference']).name}: {c['verdict']['text']}"
              for c in result["comparisons"]]
    if random_flips:
        notes.append(f"sign-flip p of over {EXACT_FLIPS_UP_TO} pairs: {RANDOM_FLIPS:,} seeded random flips, not exact")
    if notes:
        lines += ["", "notes:", *(f"  - {n}" for n in notes)]
    return "\n".join(lines)
