"""Aggregate finished cross-validation runs into ``summary.json`` (``ser-mtl aggregate DIR``).

The paper repeats every evaluation ten times and reports "the mean and standard deviation of WA
and UA" (section 5). We read that as: each repeat is one complete cross-validation, its score is
the plain average over its folds (every fold counts once, whatever its size), and the table shows
the mean and the *sample* standard deviation (ddof=1) of those repeat scores; with a single repeat
the std is 0.0. Per-fold aggregates (mean/std over the repeats of one fold) are kept for detail.
A repeat that lacks some fold is *incomplete*: averaging it over fewer folds would bias it, so it is
left out of the headline numbers and its missing runs are listed under ``missing``.

Input: ``DIR/*/metrics.json`` from the cv runner or written by hand: ``fold``, ``repeat``, ``seed``, at
least one score of ``wa``/``ua`` (absent without the emotion task), ``eer``, ``gender_acc``,
``speaker_acc``, and optionally ``n_utterances``, ``classes``, ``confmat``. ``eer`` and the accuracies
get mean ± std over the complete repeats whose every run has them, with ``{key}_repeats`` saying how
many, and are absent when no repeat qualifies; ``wa_*``/``ua_*`` are always present (null without a
value). ``DIR/cv.json``, when present, is copied under ``config``. Scores are checked against their range in
the task registry (``ser_mtl/tasks.py``): fractions in [0, 1] for accuracies and the EER, [-1, 1] for a CCC
(``ccc_<dim>``, ``ccc_mean``), years >= 0 for ``age_mae``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.layout import (  # noqa: F401 - the folder's names, also imported from here by older code
    FIT_DONE,
    FIT_RECORD,
    METRICS_NAME,
    RECORD_NAME,
    SUMMARY_NAME,
    SWEEP_NAME,
    run_dir_name,
)
from ser_mtl.tasks import SCORES

METRICS = tuple(SCORES)  # wa, ua, macro_f1, ccc_<dim>..., ccc_mean, eer, gender_acc, speaker_acc, age_mae
HEADLINE_METRICS = ("wa", "ua")  # always in summary.json (null when no complete repeat has them)
REQUIRED_KEYS = ("fold", "repeat", "seed")


def format_value(value: Any) -> str:
    """A value as the CLI reads it back: ``0.4``, ``true``, ``null``, ``[1, 2]``, plain strings as is."""
    return value if isinstance(value, str) else json.dumps(value)


class SummaryError(ValueError):
    """A metrics file or cv folder that cannot be summarised; the message names the file."""


def _check_int(path: Path, data: dict, key: str) -> None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SummaryError(f"{path}: expected {key!r} to be a non-negative integer, got {value!r}")


def _check_fraction(path: Path, data: dict, key: str) -> float:
    """``data[key]`` as a float if it lies in the score's range (`ser_mtl.tasks.SCORES`), else SummaryError."""
    value = data.get(key)
    if (problem := SCORES[key].check(value)) is not None:
        nan = isinstance(value, float) and math.isnan(value)
        hint = " (NaN: the test split had no labelled utterance)" if nan else ""
        raise SummaryError(f"{path}: expected {key!r} to be {problem}{hint}")
    return float(value)


def check_scores(path: Path, data: dict[str, Any], lenient_eer: bool = False) -> dict[str, Any]:
    """A copy of ``data`` whose scores (``METRICS`` not None) are checked against their ranges; else (also
    without any score, or with only one of ``wa``/``ua``) ``SummaryError`` naming ``path``. With
    ``lenient_eer`` an ``eer`` that is no fraction (NaN: verification could not run) becomes None instead."""
    checked = dict(data)
    if ("wa" in data) != ("ua" in data):
        raise SummaryError(f"{path}: has {'wa' if 'wa' in data else 'ua'} without "
                           f"{'ua' if 'wa' in data else 'wa'}; expected both or neither")
    if not any(data.get(key) is not None for key in METRICS):
        raise SummaryError(f"{path}: no score; expected at least one of {', '.join(METRICS)}")
    for key in METRICS:
        if data.get(key) is None:
            continue
        try:
            checked[key] = _check_fraction(path, data, key)
        except SummaryError:
            if not (lenient_eer and key == "eer"):
                raise
            checked["eer"] = None
    return checked


def read_run_metrics(path: str | Path) -> dict[str, Any]:
    """One run's ``metrics.json``, validated: ints ``fold``/``repeat``/``seed``, fractions for the scores."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise SummaryError(f"{path}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)} and scores")
    if missing := [k for k in REQUIRED_KEYS if k not in data]:
        raise SummaryError(f"{path}: missing key(s) {', '.join(missing)}; expected at least "
                           f"{', '.join(REQUIRED_KEYS)}")
    for key in ("fold", "repeat"):
        _check_int(path, data, key)
    seed = data.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SummaryError(f"{path}: expected 'seed' to be an integer, got {seed!r}")
    run = {k: v for k, v in check_scores(path, data).items() if v is not None or k not in METRICS}
    if "confmat" in run and "classes" in run:
        confmat, classes = run["confmat"], run["classes"]
        if not (isinstance(confmat, list) and len(confmat) == len(classes)
                and all(isinstance(r, list) and len(r) == len(classes) for r in confmat)):
            raise SummaryError(f"{path}: 'confmat' must be a {len(classes)} x {len(classes)} list of lists "
                               f"matching 'classes'")
    return run


def collect_runs(out: str | Path) -> list[dict[str, Any]]:
    """Every ``out/*/metrics.json``, sorted by (repeat, fold); each gets ``dir`` (its folder name)."""
    out = Path(out)
    if not out.is_dir():
        raise SummaryError(f"{out}: no such cross-validation folder")
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for path in sorted(out.glob(f"*/{METRICS_NAME}")):
        run = read_run_metrics(path) | {"dir": path.parent.name}
        key = (run["fold"], run["repeat"])
        if key in seen:
            raise SummaryError(f"{path}: fold {key[0]} repeat {key[1]} is also in "
                               f"{out / seen[key]['dir'] / METRICS_NAME}; remove one of them")
        seen[key] = run
    return sorted(seen.values(), key=lambda r: (r["repeat"], r["fold"]))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); the std of a single value is 0.0."""
    if not values:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(runs: list[dict[str, Any]], folds: list[int] | None = None,
              repeats: list[int] | None = None) -> dict[str, Any]:
    """Headline, per-repeat and per-fold statistics of ``runs`` (see the module docstring) over the grid
    ``folds`` x ``repeats`` the runs were meant to fill, extended by the folds and repeats of ``runs``."""
    by_key = {(r["fold"], r["repeat"]): r for r in runs}
    fold_list = sorted(set(folds or []) | {f for f, _ in by_key})
    repeat_list = sorted(set(repeats or []) | {r for _, r in by_key})
    missing = [{"fold": f, "repeat": r} for r in repeat_list for f in fold_list if (f, r) not in by_key]
    complete = [r for r in repeat_list if all((f, r) in by_key for f in fold_list)]

    per_repeat = []
    for rep in repeat_list:
        done = [by_key[(f, rep)] for f in fold_list if (f, rep) in by_key]
        entry: dict[str, Any] = {"repeat": rep, "n_folds": len(done), "complete": rep in complete}
        for key in METRICS:
            values = [run[key] for run in done if key in run]
            if done and len(values) == len(done):
                entry[key] = mean_std(values)[0]  # the fold average of this repeat
        per_repeat.append(entry)

    summary: dict[str, Any] = {
        "n_runs": len(runs), "folds": fold_list, "repeats": repeat_list,
        "complete_repeats": complete, "n_repeats": len(complete),
        "complete": not missing and bool(runs), "missing": missing,
    }
    for key in METRICS:
        scores = [e[key] for e in per_repeat if e["complete"] and key in e]
        if key in HEADLINE_METRICS or scores:  # wa/ua always present (null without a complete repeat)
            mean, std = mean_std(scores) if scores else (None, None)
            summary[f"{key}_mean"], summary[f"{key}_std"] = mean, std
            if key not in HEADLINE_METRICS:
                summary[f"{key}_repeats"] = len(scores)

    per_fold = []
    for fold in fold_list:
        done = [by_key[(fold, r)] for r in repeat_list if (fold, r) in by_key]
        entry = {"fold": fold, "n_repeats": len(done)}
        for key in METRICS:
            if values := [run[key] for run in done if key in run]:
                entry[f"{key}_mean"], entry[f"{key}_std"] = mean_std(values)
        per_fold.append(entry)
    return summary | {"per_repeat": per_repeat, "per_fold": per_fold, "runs": runs}


def read_json(path: str | Path) -> Any:
    """A JSON file; ``SummaryError`` naming the file and line when it does not parse."""
    path = Path(path)
    fix = (f"the file is damaged; delete the run folder {path.parent} to redo that run" if path.parent.name.startswith(
        "fold") else "the file is damaged; delete it (the runner writes it again) or restore it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SummaryError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); {fix}") from err
    except UnicodeDecodeError as err:
        raise SummaryError(f"{path}: not a UTF-8 JSON file ({err.reason}); {fix}") from err


def read_record(out: str | Path) -> dict[str, Any] | None:
    """The runner's ``cv.json`` (configuration, base seed, requested grid), or None."""
    path = Path(out) / RECORD_NAME
    return read_json(path) if path.exists() else None


def pretraining_costs(out: str | Path) -> list[dict[str, Any]]:
    """The ``cost`` of each finished pretraining of a cv folder (``pretrain_rep*/fit_record.json``, written by
    ``ser_mtl.callbacks.FitRecord``, with ``shared_by`` from its ``fit_done.json``): a pretraining is a fit the
    runs started from, so its device time counts."""
    costs = []
    for path in sorted(Path(out).glob(f"pretrain_rep*/{FIT_RECORD}")):
        cost = read_json(path).get("cost")
        if isinstance(cost, dict):
            done = path.parent / FIT_DONE
            shared = (read_json(done) or {}).get("shared_by") if done.is_file() else None
            costs.append({**cost, **({"shared_by": shared} if isinstance(shared, int) else {})})
    return costs


def total_cost(runs: list[dict[str, Any]], pretrainings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``summary.json``'s ``cost`` from the runs' ``cost`` (``metrics.json``) and the pretrainings'; None without
    any. Seconds are the stages' own (``ser_mtl/stage_clock.py``): ``fit_seconds`` and ``test_seconds`` from
    set-up to end, ``startup_seconds`` apart. ``device_hours`` counts all three on every process of a run, divided
    among the runs that shared its device (``shared_by``, ``--cv.jobs``); ``shared`` counts those runs."""
    costs = [c for c in [*runs, *pretrainings] if isinstance(c, dict)]
    if not costs:
        return None

    def number(cost: dict[str, Any], key: str, default: float = 0.0) -> float:
        value = cost.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default

    parts = [(number(c, "fit_seconds"), number(c, "test_seconds"), number(c, "startup_seconds"),
              number(c, "processes", 1.0), max(1.0, number(c, "shared_by", 1.0))) for c in costs]
    return {"fits": sum("fit_seconds" in c for c in costs), "pretrainings": len(pretrainings),
            "fit_seconds": math.fsum(p[0] for p in parts), "test_seconds": math.fsum(p[1] for p in parts),
            "startup_seconds": math.fsum(p[2] for p in parts),
            "device_hours": math.fsum((f + t + s) * n / share for f, t, s, n, share in parts) / 3600,
            "shared": sum(share > 1 for *_, share in parts),
            "devices": sorted({c["device"] for c in costs if "device" in c})}


def sweep_cost(sweep_dir: Path) -> dict[str, Any] | None:
    """The cost of a whole sweep (every setting's runs and pretrainings), with ``settings``: what the results
    of its ``selected/`` folder cost, since every setting was trained to choose among them."""
    settings = [Path(sweep_dir) / s["dir"] for s in read_json(Path(sweep_dir) / SWEEP_NAME).get("settings", [])]
    runs = [r["cost"] for d in settings if d.is_dir() for r in collect_runs(d) if isinstance(r.get("cost"), dict)]
    cost = total_cost(runs, [c for d in settings if d.is_dir() for c in pretraining_costs(d)])
    return None if cost is None else {**cost, "settings": len(settings)}


def summarise_folder(out: str | Path) -> dict:
    """What ``summary.json`` holds for a cv folder's finished runs (``out/*/metrics.json``, any folder names:
    ``fold``/``repeat`` come from the files, so runs made without the cv runner count too), not written.
    ``cost`` is `total_cost` of its runs and pretrainings; for a sweep's ``selected/`` folder, of the whole
    sweep (`sweep_cost`)."""
    runs = collect_runs(out)
    if not runs:
        raise SummaryError(f"{out}: no */{METRICS_NAME} found; nothing to summarise")
    record = read_record(out)
    grid = (record or {}).get("grid", {})
    summary = summarize(runs, grid.get("folds"), grid.get("repeats"))
    if record is not None:
        summary["config"] = record
    if (record or {}).get("selection") and (Path(out).parent / SWEEP_NAME).is_file():
        cost = sweep_cost(Path(out).parent)
    else:
        cost = total_cost([run["cost"] for run in runs if isinstance(run.get("cost"), dict)], pretraining_costs(out))
    if cost is not None:
        summary["cost"] = cost
    return summary


def aggregate(out: str, verbose: bool = True) -> dict:
    """``summarise_folder`` written to ``out/summary.json`` (atomic, idempotent).

    Args:
        out: the cross-validation folder (``--cv.out`` of ``ser-mtl cv``).
        verbose: print one line with the headline numbers.
    """
    summary = summarise_folder(out)
    atomic_write_json(Path(out) / SUMMARY_NAME, summary)
    if verbose:
        print(format_headline(summary, str(out)))
    return summary


def format_headline(summary: dict[str, Any], name: str = "") -> str:
    """``name: WA 66.1 ± 1.2 %  UA 64.0 ± 0.9 %  (10 folds x 3 repeats)`` plus what is missing; with dimensions
    their CCC (``CCC valence 0.512 ± 0.030``); a model without emotion of either kind shows its auxiliary
    scores (gender / speaker accuracy, age error) and EER instead."""
    grid = f"{len(summary['folds'])} folds x {summary['n_repeats']} complete repeats"
    primary = ("wa", "ua", "macro_f1", *(k for k in SCORES if k.startswith("ccc_")))
    shown = [SCORES[k] for k in primary if summary.get(f"{k}_mean") is not None]
    if not shown:
        shown = [s for k, s in SCORES.items() if k not in primary and summary.get(f"{k}_mean") is not None]
    if not shown:
        text = f"{name}: no complete repeat yet ({summary['n_runs']} runs done)"
    else:
        one = summary["n_repeats"] == 1  # one repeat has no spread to show (the report writes "± –")
        text = f"{name}: " + "  ".join(
            f"{s.label} {s.text(summary[f'{s.key}_mean'], None if one else summary[f'{s.key}_std'])}"
            for s in shown) + f"  ({grid}{'; one repeat: no ± over repeats' if one else ''})"
    if summary["missing"]:
        text += f"; {len(summary['missing'])} run(s) missing"
    return text
