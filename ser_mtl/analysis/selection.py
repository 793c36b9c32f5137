"""A sweep's setting chosen on validation per (fold, repeat): ``DIR/selected/``, an ordinary cv folder.

Each (fold, repeat) takes the run of the setting with the best ``selection.score`` in its ``metrics.json``
(``mode`` max or min; ties: the first setting of ``sweep.json``), test scores and all; test scores never
choose. Only (fold, repeat) pairs that every setting finished with a score take part; ``selection.json``
lists the others under ``skipped``. Written by ``ser-mtl sweep`` and ``ser-mtl aggregate SWEEP_DIR``.

Selection needs one protocol and one label space: settings whose resolved configurations differ in
`SAME_EXPERIMENT` (a sweep over ``data.task`` or ``data.classes``) are not mixed into one UA; ``selection.json``
then says why and ``selected/`` holds nothing else. Otherwise ``selected/cv.json`` carries the settings' resolved
configuration (the swept keys blanked), so ``compare`` and ``report`` check and describe it like any cv folder.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

from ser_mtl.analysis import summary
from ser_mtl.analysis.paper_results import config_section
from ser_mtl.analysis.summary import SWEEP_NAME, format_value, run_dir_name
from ser_mtl.io_utils import atomic_write_json

SELECTED_NAME = "selected"
SELECTION_NAME = "selection.json"
# What makes the settings' (fold, repeat) runs one experiment with one label space (resolved data.* settings)
SAME_EXPERIMENT = ("data.corpus", "data.task", "data.scheme", "data.target_corpus", "data.seed", "data.classes",
                   "data.class_map")


def _lookup(resolved: dict[str, Any] | None, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return config_section(resolved or {}, section).get(name)


def shared_protocol(records: list[dict[str, Any] | None], params: list[str]) -> tuple[dict | None, str | None]:
    """(the settings' common resolved configuration with the swept ``params`` blanked, None) when they agree in
    `SAME_EXPERIMENT`; (None, why not) when they differ; (None, None) without resolved configurations."""
    resolved = [(r or {}).get("resolved") for r in records]
    if not resolved or any(r is None for r in resolved):
        return None, None
    for key in SAME_EXPERIMENT:
        values = [_lookup(r, key) for r in resolved]
        if any(v != values[0] for v in values[1:]):
            return None, (f"the settings differ in {key} ({', '.join(sorted({json.dumps(v) for v in values}))}): "
                          "one selection would mix label spaces or protocols; compare the settings instead")
    common = copy.deepcopy(resolved[0])
    for param in params:  # the selected runs come from several values of these
        section, _, name = param.rpartition(".")
        if section and isinstance(target := config_section(common, section), dict) and name in target:
            target[name] = None
    return common, None


def _score(run: dict[str, Any] | None) -> tuple[str, str, float] | None:
    """(monitor, mode, score) of a run's ``selection``; None without a usable one."""
    sel = (run or {}).get("selection")
    if isinstance(sel, dict) and sel.get("mode") in ("max", "min") and type(sel.get("score")) in (int, float) \
            and math.isfinite(sel["score"]):  # type(): a bool is no score
        return str(sel.get("monitor")), sel["mode"], float(sel["score"])
    return None


def value_label(values: dict[str, Any]) -> str:
    """A setting's values as the report prints them: ``0.4``, ``0.4/0.6`` for several parameters."""
    return "/".join(format_value(v) for v in values.values())


def select_on_validation(sweep_dir: str | Path, verbose: bool = True) -> dict[str, Any]:
    """Write ``sweep_dir/selected/`` (run folders, ``cv.json``, ``selection.json``, ``summary.json``);
    returns the content of ``selection.json``. Idempotent; a re-run follows the runs finished since."""
    root = Path(sweep_dir)
    sweep = summary.read_json(root / SWEEP_NAME)
    settings = sweep["settings"]
    resolved, refused = shared_protocol([summary.read_record(root / s["dir"]) if (root / s["dir"]).is_dir() else None
                                         for s in settings], list(sweep["params"]))
    if refused is not None:  # selected/ holds only selection.json, saying why
        shutil.rmtree(root / SELECTED_NAME, ignore_errors=True)
        selection = {"params": sweep["params"], "selected_on": None, "counts": {}, "chosen": [], "skipped": [],
                     "refused": refused}
        atomic_write_json(root / SELECTED_NAME / SELECTION_NAME, selection)
        if verbose:
            print(f"[selection] {root}: no selection on validation: {refused}")
        return selection
    runs = [{(r["fold"], r["repeat"]): r for r in summary.collect_runs(root / s["dir"])} if (root / s["dir"]).is_dir()
            else {} for s in settings]
    chosen, skipped = [], []
    for fold, repeat in sorted(set().union(*runs), key=lambda k: (k[1], k[0])):
        found = [r.get((fold, repeat)) for r in runs]
        scores = [_score(run) for run in found]
        why = [f"{s['dir']}: {'no selection score' if run else 'not finished'}"
               for s, run, score in zip(settings, found, scores) if score is None]
        if not why and len({score[:2] for score in scores}) > 1:
            why = [f"the settings' runs select on different monitors {sorted({score[:2] for score in scores})}"]
        if why:
            skipped.append({"fold": fold, "repeat": repeat, "reason": "; ".join(why)})
            continue
        monitor, mode = scores[0][:2]
        values = [score[2] for score in scores]
        best = values.index(max(values) if mode == "max" else min(values))  # index(): ties go to the first
        chosen.append({"fold": fold, "repeat": repeat, "setting": settings[best]["dir"], "monitor": monitor,
                       "mode": mode, "scores": {s["dir"]: v for s, v in zip(settings, values)}})
        run = {k: v for k, v in found[best].items() if k != "dir"}
        run["selected"] = {"setting": settings[best]["dir"], "values": settings[best]["values"]}
        atomic_write_json(root / SELECTED_NAME / run_dir_name(fold, repeat) / summary.METRICS_NAME, run)
    out = root / SELECTED_NAME
    keep = {run_dir_name(c["fold"], c["repeat"]) for c in chosen}
    for stale in out.glob(f"*/{summary.METRICS_NAME}"):  # chosen before, skipped now (a run was removed)
        if stale.parent.name not in keep:
            shutil.rmtree(stale.parent)
    counts = {value_label(s["values"]): n for s in settings if (n := sum(c["setting"] == s["dir"] for c in chosen))}
    monitors = ", ".join(sorted({c["monitor"] for c in chosen})) or None
    record = {"selection": True, "config_args": sweep.get("config_args", []), "params": sweep["params"],
              "selected_on": monitors}
    first = (summary.read_record(root / settings[0]["dir"]) if settings else None) or {}
    record |= {k: first[k] for k in ("base_seed", "grid") if k in first}  # grid: a skipped pair counts as missing
    if resolved is not None:
        record["resolved"] = resolved
    selection = {"params": sweep["params"], "selected_on": monitors, "counts": counts, "chosen": chosen,
                 "skipped": skipped}
    atomic_write_json(out / summary.RECORD_NAME, record)
    atomic_write_json(out / SELECTION_NAME, selection)
    if verbose:
        print(f"[selection] {out}: {len(chosen)} (fold, repeat) chosen on {monitors or 'validation'}, "
              f"{len(skipped)} skipped" + (f" ({skipped[0]['reason']}, ...)" if skipped else ""))
    if chosen:
        summary.aggregate(str(out), verbose)
    else:
        (out / summary.SUMMARY_NAME).unlink(missing_ok=True)
    return selection
