"""The pieces of ``ser-mtl report`` (``ser_mtl.analysis.report``): loading cv and sweep folders, the
cross-validation tables with the paper's numbers and significance marks, per-fold tables, confusion sums."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_mtl.analysis.confusion import confusion_from_predictions
from ser_mtl.analysis.paper_results import PaperResult, Protocol, match, protocol_from_config
from ser_mtl.analysis.selection import SELECTED_NAME, SELECTION_NAME
from ser_mtl.analysis.summary import (
    METRICS_NAME,
    SUMMARY_NAME,
    SWEEP_NAME,
    SummaryError,
    read_json,
    summarise_folder,
)
from ser_mtl.tasks import SCORES


@dataclass
class Experiment:
    """One cross-validation: its folder, summary and protocol."""

    name: str
    path: Path
    summary: dict[str, Any]
    protocol: Protocol | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Sweep:
    name: str
    path: Path
    params: list[str]
    settings: list[tuple[dict[str, Any], Experiment]]
    notes: list[str] = field(default_factory=list)
    selected: Experiment | None = None  # DIR/selected: per (fold, repeat) the setting chosen on validation
    selection: dict[str, Any] | None = None  # its selection.json (counts, chosen, skipped)


def pct(mean: float | None, std: float | None = None) -> str:
    """``0.6612, 0.0123`` -> ``66.1 ± 1.2`` (percent, one decimal); missing -> ``–``."""
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


def cell(s: dict[str, Any], key: str, flag: str | bool = False) -> str:
    """``key``'s mean ± std from a summary (or a per-fold entry): in percent for a fraction, else in the score's
    own unit (CCC, years; `ser_mtl.tasks.SCORES`); one repeat has no spread: ``± –``; `` *`` where ``flag``
    names ``key`` (significance)."""
    mean, std = s.get(f"{key}_mean"), s.get(f"{key}_std")
    one = s.get(f"{key}_repeats", s.get("n_repeats")) == 1 and mean is not None
    score = SCORES.get(key)
    if mean is None or score is None or score.percent:
        text = pct(mean, None if one else std)
    else:
        digits = 3 if not score.unit else 2
        text = f"{mean:.{digits}f}" + ("" if one or std is None else f" ± {std:.{digits}f}")
    return text + (" ± –" if one else "") + (" *" if flag == key else "")


def protocol_groups(exps: list[Experiment]) -> list[list[int]]:
    """Row indices by protocol (corpus, target, scheme, task): significance compares rows within one only."""
    groups: dict[tuple, list[int]] = {}
    for i, exp in enumerate(exps):
        groups.setdefault(protocol_key(exp.protocol), []).append(i)
    return list(groups.values())


def cost_line(summaries: list[dict[str, Any]]) -> list[str]:
    """The measured cost of a table's runs (``summary.json`` ``cost``), or nothing."""
    costs = [s["cost"] for s in summaries if s.get("cost")]
    if not costs:
        return []
    pretrainings, shared = sum(c.get("pretrainings", 0) for c in costs), sum(c.get("shared", 0) for c in costs)
    return ["", (f"Measured: {sum(c['fits'] for c in costs)} fits"
                 + (f" ({pretrainings} of them pretrainings)" if pretrainings else "")
                 + f", {sum(c['device_hours'] for c in costs):.2f} device-hours "
                 f"({', '.join(sorted({d for c in costs for d in c['devices']}))}; set-up and start-up included"
                 + (f"; {shared} runs shared a device, their time divided among them" if shared else "") + ").")]


def load_experiment(path: Path, name: str | None = None) -> Experiment:
    """A cv folder; without ``summary.json`` its finished runs are summarised here (nothing written)."""
    notes = []
    summary_path = path / SUMMARY_NAME
    if summary_path.is_file():
        summary = read_json(summary_path)
        finished = len(list(path.glob(f"*/{METRICS_NAME}")))
        if finished != summary.get("n_runs"):
            notes.append(f"{summary_path} covers {summary.get('n_runs')} runs but {finished} are finished; "
                         f"`ser-mtl aggregate {path}` updates it")
    else:
        summary = summarise_folder(path)
        notes.append(f"{path}: no {SUMMARY_NAME} yet; summarised the {summary['n_runs']} finished runs in memory")
    config = summary.get("config") or {}
    return Experiment(config.get("label") or name or path.name, path, summary,
                      protocol_from_config(config.get("resolved")), notes)


def load_sweep(path: Path) -> Sweep:
    record = read_json(path / SWEEP_NAME)
    settings, notes = [], []
    for entry in record["settings"]:
        try:
            settings.append((entry["values"], load_experiment(path / entry["dir"], entry["dir"])))
        except (SummaryError, FileNotFoundError):
            notes.append(f"{entry['dir']}: no finished runs yet")
    selection_path = path / SELECTED_NAME / SELECTION_NAME
    selection = read_json(selection_path) if selection_path.is_file() else {"chosen": [], "skipped": []}
    selected = load_experiment(path / SELECTED_NAME, "selected on validation") if selection["chosen"] else None
    if selected is None and selection.get("refused"):
        notes.append(f"no selection on validation: {selection['refused']}")
    elif selected is None:
        why = selection["skipped"][0]["reason"] if selection["skipped"] else f"`ser-mtl aggregate {path}` writes it"
        notes.append(f"no setting selected on validation yet ({why})")
    return Sweep(path.name, path, list(record["params"]), settings, notes, selected, selection)


def discover(dirs: list[str]) -> list[Experiment | Sweep]:
    """cv folders, sweep folders, and one level of folders holding them, in the order given."""
    items: list[Experiment | Sweep] = []
    for item in dirs:
        path = Path(item)
        if (path / SWEEP_NAME).is_file():
            items.append(load_sweep(path))
        elif (path / SUMMARY_NAME).is_file() or any(path.glob(f"*/{METRICS_NAME}")):
            items.append(load_experiment(path))
        elif path.is_dir():
            children = sorted(p for p in path.iterdir() if (p / SWEEP_NAME).is_file() or (p / SUMMARY_NAME).is_file())
            if not children:
                raise SummaryError(f"{path}: no {SUMMARY_NAME}, {SWEEP_NAME} or */{METRICS_NAME} here or one level down")
            items += discover([str(c) for c in children])
        else:
            raise SummaryError(f"{path}: no such folder")
    return items


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


def paper_cells(results: list[PaperResult]) -> tuple[str, str]:
    wa = [f"{r.text()} (T{r.table})" for r in results if r.metric == "wa"]
    ua = [f"{r.text()} (T{r.table})" for r in results if r.metric == "ua"]
    ua += [f"{r.text()} (T{r.table}, metric not stated)" for r in results if r.metric == "unspecified"]
    return "; ".join(wa) or "–", "; ".join(ua) or "–"


def grid_text(summary: dict[str, Any]) -> str:
    text = f"{len(summary['folds'])}×{summary['n_repeats']}"
    return text + (f" ({len(summary['missing'])} missing)" if summary["missing"] else "")


def protocol_cells(p: Protocol | None) -> list[str]:
    if p is None:
        return ["?", "?", "?", "?"]
    corpus = f"{p.corpus} → {p.target}" if p.target else (p.corpus or "?")
    return [p.model_name(), corpus, p.task or "?", p.scheme or "?"]


# Score columns beside WA / UA / macro-F1 / EER: dimensional emotion's CCC, then the auxiliary tasks' scores.
def _column_head(key: str) -> str:
    score = SCORES[key]
    if key.endswith("_acc"):
        return f"{score.label} acc (%)"  # gender acc (%), speaker acc (%)
    return f"{score.label} ({score.unit})" if score.unit and not score.percent else score.label


AUX_COLUMNS = tuple((key, _column_head(key)) for key in SCORES if key not in ("wa", "ua", "macro_f1", "eer"))


def aux_columns(summaries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The score columns beyond the emotion classes' and the EER that some row of a table has (``<key>_mean``
    in its summary): CCC per dimension and mean, gender / speaker accuracy, age error."""
    return [(key, head) for key, head in AUX_COLUMNS if any(s.get(f"{key}_mean") is not None for s in summaries)]


def significance(exps: list[Experiment], groups: list[list[int]]) -> tuple[list[bool], list[str]]:
    from ser_mtl.analysis.compare import group_significance

    return group_significance([(e.name, e.summary.get("runs", []), e.protocol) for e in exps], groups)


def protocol_key(p: Protocol | None) -> tuple:
    return (None,) if p is None else (p.corpus, p.target, p.scheme, p.task)


def results_table(experiments: list[Experiment]) -> list[str]:
    """One row per cross-validation; rows of one protocol (corpus, scheme, task) are tested against
    its reference row (``significance``), with ``*`` on a significant UA (the mean CCC for dimensional
    emotion without classes) and a footnote."""
    aux = aux_columns([e.summary for e in experiments])
    lines = [("| experiment | model | corpus | task | scheme | folds×repeats | WA (%) | UA (%) | macro-F1 (%) | "
              "EER (%) | " + "".join(f"{head} | " for _, head in aux) + "paper WA (%) | paper UA (%) |"),
             "|" + "---|" * (12 + len(aux))]
    flags, notes = significance(experiments, protocol_groups(experiments))
    for exp, flag in zip(experiments, flags):
        s = exp.summary
        paper_wa, paper_ua = paper_cells(match(exp.protocol))
        cells = [exp.name, *protocol_cells(exp.protocol), grid_text(s), cell(s, "wa"),
                 cell(s, "ua", flag), cell(s, "macro_f1"), cell(s, "eer"), *(cell(s, k, flag) for k, _ in aux),
                 paper_wa, paper_ua]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + notes + cost_line([e.summary for e in experiments])


def per_fold_table(exp: Experiment) -> list[str]:
    folds = exp.summary["per_fold"]
    has_eer = any("eer_mean" in f for f in folds)
    extra = [(k, head) for k, head in AUX_COLUMNS if not k.endswith("_acc") and any(f"{k}_mean" in f for f in folds)]
    lines = ["| fold | repeats | WA (%) | UA (%) | macro-F1 (%) |" + " EER (%) |" * has_eer
             + "".join(f" {head} |" for _, head in extra), "|" + "---|" * (5 + has_eer + len(extra))]
    for f in folds:
        cells = [str(f["fold"]), str(f["n_repeats"]), cell(f, "wa"), cell(f, "ua"), cell(f, "macro_f1")] \
            + [cell(f, "eer")] * has_eer + [cell(f, k) for k, _ in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def dimension_table(experiments: list[Experiment]) -> list[str]:
    """Dimensional emotion: per cross-validation the CCC of each dimension and their mean (mean ± sample std
    over repeats), the MSP-Podcast challenge's score; nothing when no experiment predicts a dimension."""
    keys = [k for k in SCORES if k.startswith("ccc_") and any(e.summary.get(f"{k}_mean") is not None
                                                                for e in experiments)]
    rows = [e for e in experiments if any(e.summary.get(f"{k}_mean") is not None for k in keys)]
    if not rows:
        return []
    lines = ["| experiment | model | corpus | scheme | folds×repeats | " + " | ".join(SCORES[k].label for k in keys)
             + " |", "|" + "---|" * (5 + len(keys))]
    for exp in rows:
        model, corpus, _, scheme = protocol_cells(exp.protocol)
        lines.append("| " + " | ".join([exp.name, model, corpus, scheme, grid_text(exp.summary),
                                        *(cell(exp.summary, k) for k in keys)]) + " |")
    return lines


def summed_confusion(exp: Experiment) -> tuple[np.ndarray, list[str]] | None:
    """Confusion counts summed over every run: from the summary's ``confmat`` or the runs' predictions.csv."""
    runs = exp.summary.get("runs", [])
    with_confmat = [r for r in runs if r.get("confmat") and r.get("classes")]
    if with_confmat:
        classes = list(with_confmat[0]["classes"])
        total = np.zeros((len(classes), len(classes)), dtype=np.int64)  # (C, C)
        for run in with_confmat:
            if list(run["classes"]) == classes:
                total += np.asarray(run["confmat"], dtype=np.int64)
        return total, classes
    return confusion_from_predictions(exp.path, [r.get("dir", "") for r in runs])


def mark_baselines(items: list[Experiment | Sweep]) -> list[Experiment | Sweep]:
    """Label the classical baselines' cv folders (``ser-mtl baseline --baseline.cv_out``, a ``baseline``
    entry in ``cv.json``) among ``items``: the baseline's name (e.g. ``eGeMAPS + LogReg``) as model, the
    corpus, task and scheme of its ``data.*`` settings, and no paper numbers (the paper has no such row)."""
    for item in (i for i in items if isinstance(i, Experiment)):
        config = item.summary.get("config") or {}
        if not isinstance(baseline := config.get("baseline"), dict):
            continue
        p = protocol_from_config(config.get("resolved")) or Protocol(None, None, None, None, None)
        item.protocol = Protocol(corpus=p.corpus, scheme=p.scheme, task=p.task, arch=baseline.get("label", "baseline"),
                                 aux=None, target=p.target)
    return items
