"""Markdown tables and PNG figures in the paper's form from cv and sweep folders (``ser-mtl report``).

Runbook::

    ser-mtl report runs/iemocap_10fold runs/iemocap_loso runs/alpha --out report/
    # -> report/report.md, report/confusion_*.png, report/sweep_*.png, report/eer.png,
    #    report/fig4_speakers.png (sweeps over the number of speakers: ser_mtl.analysis.figure4)

Each argument is a cv folder (``summary.json``; without one, its finished runs are summarised in
memory), a sweep folder (``sweep.json``) or a folder of such folders. Numbers are percent, mean ±
sample std over repeats of each repeat's fold average (``ser_mtl.analysis.summary``), with one
decimal. Where an experiment's protocol (corpus, scheme, task, architecture, auxiliary tasks; read
from its resolved configuration) matches a published row, the paper's number is shown beside ours
in a column labelled "paper", with its table number (``ser_mtl.analysis.paper_results``).
Sweep tables show the paper's number once, above the table, since it belongs to the paper's own
alpha/beta choice rather than to every swept value.

Significance: rows of the cross-validation table with the same protocol (corpus, target, scheme,
label task; rows whose protocol is unknown form one group), and the settings of one sweep, are each
compared with their reference row, the proposed model (AAE with gender + speaker tasks) where
there is one, else the first row. A UA that differs with p < 0.05 gets ``*``; the footnote names
the test (two-sided exact sign-flip test over repeats, ``ser_mtl.analysis.compare``) and gives
every row's difference, interval and p, or why it could not be tested.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_mtl.analysis.confusion import confusion_from_predictions
from ser_mtl.analysis.paper_results import PaperResult, Protocol, match, protocol_from_config
from ser_mtl.analysis.summary import (
    METRICS_NAME,
    SUMMARY_NAME,
    SummaryError,
    collect_runs,
    read_json,
    read_record,
    summarize,
)
from ser_mtl.command_line import command, run_function
from ser_mtl.io_utils import atomic_write_text
from ser_mtl.runs.sweep import SWEEP_NAME, format_value


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


def pct(mean: float | None, std: float | None = None) -> str:
    """``0.6612, 0.0123`` -> ``66.1 ± 1.2`` (percent, one decimal); missing -> ``–``."""
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" if std is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


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
        runs = collect_runs(path)
        if not runs:
            raise SummaryError(f"{path}: neither {SUMMARY_NAME} nor */{METRICS_NAME}")
        record = read_record(path)
        grid = (record or {}).get("grid", {})
        summary = summarize(runs, grid.get("folds"), grid.get("repeats"))
        summary["config"] = record
        notes.append(f"{path}: no {SUMMARY_NAME} yet; summarised the {len(runs)} finished runs in memory")
    config = summary.get("config") or {}
    label = config.get("label")
    return Experiment(label or name or path.name, path, summary, protocol_from_config(config.get("resolved")), notes)


def load_sweep(path: Path) -> Sweep:
    record = read_json(path / SWEEP_NAME)
    settings, notes = [], []
    for entry in record["settings"]:
        folder = path / entry["dir"]
        try:
            settings.append((entry["values"], load_experiment(folder, entry["dir"])))
        except (SummaryError, FileNotFoundError):
            notes.append(f"{entry['dir']}: no finished runs yet")
    return Sweep(path.name, path, list(record["params"]), settings, notes)


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


def _paper_cells(results: list[PaperResult]) -> tuple[str, str]:
    wa = [f"{r.text()} (T{r.table})" for r in results if r.metric == "wa"]
    ua = [f"{r.text()} (T{r.table})" for r in results if r.metric == "ua"]
    ua += [f"{r.text()} (T{r.table}, metric not stated)" for r in results if r.metric == "unspecified"]
    return "; ".join(wa) or "–", "; ".join(ua) or "–"


def _grid_text(summary: dict[str, Any]) -> str:
    text = f"{len(summary['folds'])}×{summary['n_repeats']}"
    return text + (f" ({len(summary['missing'])} missing)" if summary["missing"] else "")


def _protocol_cells(p: Protocol | None) -> list[str]:
    if p is None:
        return ["?", "?", "?", "?"]
    corpus = f"{p.corpus} → {p.target}" if p.target else (p.corpus or "?")
    return [p.model_name(), corpus, p.task or "?", p.scheme or "?"]


AUX_COLUMNS = (("gender_acc", "gender acc (%)"), ("speaker_acc", "speaker acc (%)"))


def _aux_columns(summaries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The auxiliary-task accuracy columns some row of a table has (``<key>_mean`` in its summary)."""
    return [(key, head) for key, head in AUX_COLUMNS if any(s.get(f"{key}_mean") is not None for s in summaries)]


def _significance(exps: list[Experiment], groups: list[list[int]]) -> tuple[list[bool], list[str]]:
    from ser_mtl.analysis.compare import group_significance

    return group_significance([(e.name, e.summary.get("runs", []), e.protocol) for e in exps], groups)


def _protocol_key(p: Protocol | None) -> tuple:
    return (None,) if p is None else (p.corpus, p.target, p.scheme, p.task)


def results_table(experiments: list[Experiment]) -> list[str]:
    """One row per cross-validation; rows of one protocol (corpus, scheme, task) are tested against
    its reference row (``_significance``), with ``*`` on a significant UA and a footnote."""
    aux = _aux_columns([e.summary for e in experiments])
    lines = [("| experiment | model | corpus | task | scheme | folds×repeats | WA (%) | UA (%) | EER (%) | "
              + "".join(f"{head} | " for _, head in aux) + "paper WA (%) | paper UA (%) |"),
             "|" + "---|" * (11 + len(aux))]
    groups: dict[tuple, list[int]] = {}
    for i, exp in enumerate(experiments):
        groups.setdefault(_protocol_key(exp.protocol), []).append(i)
    flags, notes = _significance(experiments, list(groups.values()))
    for exp, flag in zip(experiments, flags):
        s = exp.summary
        paper_wa, paper_ua = _paper_cells(match(exp.protocol))
        cells = [exp.name, *_protocol_cells(exp.protocol), _grid_text(s), pct(s.get("wa_mean"), s.get("wa_std")),
                 pct(s.get("ua_mean"), s.get("ua_std")) + (" *" if flag else ""),
                 pct(s.get("eer_mean"), s.get("eer_std")),
                 *(pct(s.get(f"{k}_mean"), s.get(f"{k}_std")) for k, _ in aux), paper_wa, paper_ua]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + notes


def per_fold_table(exp: Experiment) -> list[str]:
    has_eer = any("eer_mean" in f for f in exp.summary["per_fold"])
    head = "| fold | repeats | WA (%) | UA (%) |" + (" EER (%) |" if has_eer else "")
    lines = [head, "|" + "---|" * (5 if has_eer else 4)]
    for f in exp.summary["per_fold"]:
        cells = [str(f["fold"]), str(f["n_repeats"]), pct(f.get("wa_mean"), f.get("wa_std")),
                 pct(f.get("ua_mean"), f.get("ua_std"))]
        if has_eer:
            cells.append(pct(f.get("eer_mean"), f.get("eer_std")))
        lines.append("| " + " | ".join(cells) + " |")
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


def _sweep_table(sweep: Sweep) -> list[str]:
    """One row per setting; the paper's numbers once above the table when every setting shares one
    protocol (an alpha sweep: they belong to the paper's own alpha/beta), else per row (a sweep over
    model.tasks or data.task reproduces Tables 5 and 6 row by row). Settings are tested against the
    reference row (``_significance``)."""
    papers = [_paper_cells(match(exp.protocol)) for _, exp in sweep.settings]
    per_row = len(set(papers)) > 1
    aux = _aux_columns([exp.summary for _, exp in sweep.settings])
    lines = []
    if papers and not per_row and papers[0] != ("–", "–"):
        lines += [f"Paper, same protocol at its own α/β: WA {papers[0][0]}, UA {papers[0][1]}.", ""]
    extra = " paper WA (%) | paper UA (%) |" if per_row else ""
    lines += ["| " + " | ".join(sweep.params) + " | folds×repeats | WA (%) | UA (%) | EER (%) |"
              + "".join(f" {head} |" for _, head in aux) + extra,
              "|" + "---|" * (len(sweep.params) + 4 + len(aux) + 2 * per_row)]
    exps = [exp for _, exp in sweep.settings]
    flags, notes = _significance(exps, [list(range(len(exps)))])
    for (values, exp), paper, flag in zip(sweep.settings, papers, flags):
        s = exp.summary
        cells = [format_value(values[p]) for p in sweep.params]
        cells += [_grid_text(s), pct(s.get("wa_mean"), s.get("wa_std")),
                  pct(s.get("ua_mean"), s.get("ua_std")) + (" *" if flag else ""),
                  pct(s.get("eer_mean"), s.get("eer_std")),
                  *(pct(s.get(f"{k}_mean"), s.get(f"{k}_std")) for k, _ in aux), *(paper if per_row else ())]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + notes + ([""] + [f"- {n}" for n in sweep.notes] if sweep.notes else [])


def _sweep_section(sweep: Sweep, out: Path, figures: list[str]) -> list[str]:
    from ser_mtl.analysis.plots import plot_confusion, plot_sweep

    lines = [f"### Sweep over {', '.join(sweep.params)} ({sweep.path})", "", *_sweep_table(sweep)]
    done = [(v, e) for v, e in sweep.settings if e.summary.get("ua_mean") is not None]
    if done:
        first, others = sweep.params[0], sweep.params[1:]
        x_all: dict[str, Any] = {}  # keyed by the printed value: lists are not hashable
        series: dict[str, dict[str, tuple[float, float]]] = {}
        for values, exp in done:
            x_all.setdefault(format_value(values[first]), values[first])
            key = ", ".join(f"{p}={format_value(values[p])}" for p in others) or "UA"
            series.setdefault(key, {})[format_value(values[first])] = (100 * exp.summary["ua_mean"],
                                                                       100 * exp.summary["ua_std"])
        order = sorted(x_all, key=lambda k: _sort_key(x_all[k]))
        aligned = {name: ([points.get(k, (np.nan, np.nan))[0] for k in order],
                          [points.get(k, (np.nan, np.nan))[1] for k in order]) for name, points in series.items()}
        xs = [x_all[k] if isinstance(x_all[k], (int, float)) and not isinstance(x_all[k], bool) else k for k in order]
        name = f"sweep_{_slug(sweep.name)}.png"
        plot_sweep(xs, aligned, first, "UA (%)", f"UA against {first} ({sweep.name})", out / name)
        figures.append(name)
        lines += ["", f"![UA against {first}]({name})"]
        _, best = max(done, key=lambda ve: ve[1].summary["ua_mean"])
        confusion = summed_confusion(best)
        if confusion is not None:
            cname = f"confusion_{_slug(sweep.name)}_best.png"
            plot_confusion(*confusion, f"{sweep.name}: best UA at {best.name}", out / cname)
            figures.append(cname)
            lines += ["", f"Confusion matrix of the best setting ({best.name}), summed over its runs:", "",
                      f"![confusion {best.name}]({cname})"]
    return lines + [""]


def _sort_key(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


def mark_baselines(items: list[Experiment | Sweep]) -> list[Experiment | Sweep]:
    """Label the classical baselines' cv folders (``ser-mtl baseline --baseline.cv_out``) among ``items``.

    Such a folder's ``cv.json`` (copied into its summary under ``config``) has a ``baseline`` entry
    (``ser_mtl.baselines.baseline_cv``). Its row in the tables gets the baseline's name (e.g.
    ``eGeMAPS + LogReg``) in the model column, the corpus, task and scheme of its ``data.*`` settings,
    and no paper numbers (the paper has no such row). Everything else is left as it is.
    """
    for item in items:
        if not isinstance(item, Experiment):
            continue
        config = item.summary.get("config") or {}
        baseline = config.get("baseline")
        if not isinstance(baseline, dict):
            continue
        p = protocol_from_config(config.get("resolved")) or Protocol(None, None, None, None, None)
        item.protocol = Protocol(corpus=p.corpus, scheme=p.scheme, task=p.task, arch=baseline.get("label", "baseline"),
                                 aux=None, target=p.target)
    return items


def report(dirs: list[str], out: str = "report") -> str:
    """Write ``out/report.md`` and its PNG figures from cv/sweep folders; returns the Markdown path.

    Args:
        dirs: cv folders (``summary.json``), sweep folders (``sweep.json``) or folders holding them.
        out: output folder for ``report.md`` and the figures.
    """
    from ser_mtl.analysis.plots import plot_confusion, plot_eer

    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    items = mark_baselines(discover(list(dirs) if isinstance(dirs, (list, tuple)) else [dirs]))
    experiments = [i for i in items if isinstance(i, Experiment)]
    sweeps = [i for i in items if isinstance(i, Sweep)]
    figures: list[str] = []
    lines = ["# ser-mtl results", "",
             ("WA and UA in percent: mean ± sample standard deviation over repeats of each repeat's average "
              "over its folds (paper section 5: every evaluation repeated, mean and standard deviation). "
              "Columns marked *paper* are the published numbers of Latif et al. for the same protocol "
              "(T3-T6 = their Tables 3-6), not ours."), ""]
    if experiments:
        lines += ["## Cross-validations", "", *results_table(experiments), ""]
    if sweeps:
        lines += ["## Sweeps", ""]
        for sweep in sweeps:
            lines += _sweep_section(sweep, out_path, figures)
        from ser_mtl.analysis.figure4 import figure4_section

        lines += figure4_section(sweeps, out_path, figures)
    eer_rows = [(e.name, e.summary) for e in experiments if e.summary.get("eer_mean") is not None]
    eer_rows += [(f"{s.name}/{e.name}", e.summary) for s in sweeps for _, e in s.settings
                 if e.summary.get("eer_mean") is not None]
    if eer_rows:
        plot_eer([n for n, _ in eer_rows], [100 * s["eer_mean"] for _, s in eer_rows],
                 [100 * s["eer_std"] for _, s in eer_rows], out_path / "eer.png")
        figures.append("eer.png")
        lines += ["## Speaker verification", "",
                  ("Equal error rate of the d-vector verification (mean ± std over repeats); no score files "
                   "are kept per trial, so no DET curve."), "", "![EER](eer.png)", ""]
    if experiments:
        lines += ["## Per-fold detail", ""]
        for exp in experiments:
            lines += [f"### {exp.name}", "", f"Folder `{exp.path}`; mean ± std over the repeats of each fold.", "",
                      *per_fold_table(exp), ""]
            if exp.summary["missing"]:
                missing = ", ".join(f"fold {m['fold']} rep {m['repeat']}" for m in exp.summary["missing"])
                lines += [f"Missing runs (their repeats are left out of the headline numbers): {missing}.", ""]
            confusion = summed_confusion(exp)
            if confusion is not None:
                name = f"confusion_{_slug(exp.name)}.png"
                plot_confusion(*confusion, f"{exp.name}: summed over {exp.summary['n_runs']} runs", out_path / name)
                figures.append(name)
                lines += [f"![confusion {exp.name}]({name})", ""]
    notes = [n for e in experiments for n in e.notes] + [n for w in sweeps for _, e in w.settings for n in e.notes]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    path = out_path / "report.md"
    atomic_write_text(path, "\n".join(lines))
    print(f"[report] {path} ({len(experiments)} cross-validations, {len(sweeps)} sweeps, {len(figures)} figures)")
    return str(path)


@command(positional="dirs", errors=(SummaryError,))
def report_main(dirs: list[str], out: str = "report") -> None:
    """Markdown tables and PNG figures (``OUT/report.md``) from cv and sweep folders.

    Args:
        dirs: cv folders, sweep folders, or folders holding them.
        out: output folder for report.md and the PNG figures.
    """
    report(dirs, out)


if __name__ == "__main__":
    run_function(report_main, sys.argv[1:], "ser-mtl report")
