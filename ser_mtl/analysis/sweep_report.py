"""A sweep's part of ``ser-mtl report``: a row per setting, the row selected on validation
(``ser_mtl.analysis.selection``), the UA plot and the selected runs' confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ser_mtl.analysis.paper_results import match
from ser_mtl.analysis.report_tables import (
    Sweep,
    aux_columns,
    cell,
    cost_line,
    grid_text,
    paper_cells,
    protocol_groups,
    significance,
    slug,
    summed_confusion,
)
from ser_mtl.analysis.selection import value_label
from ser_mtl.analysis.summary import format_value


def _score_cells(s: dict[str, Any], aux: list[tuple[str, str]], flag: str | bool = False) -> list[str]:
    return [grid_text(s), cell(s, "wa"), cell(s, "ua", flag), cell(s, "eer"), *(cell(s, k, flag) for k, _ in aux)]


def sweep_table(sweep: Sweep) -> list[str]:
    """One row per setting, then the row selected on validation; the paper's numbers once above the table
    when all settings share one protocol (an alpha sweep), else per row (a sweep over model.tasks or
    data.task reproduces Tables 5 and 6). Settings are tested within their protocol (``significance``)."""
    papers = [paper_cells(match(exp.protocol)) for _, exp in sweep.settings]
    per_row = len(set(papers)) > 1
    aux = aux_columns([exp.summary for _, exp in sweep.settings])
    lines = []
    if papers and not per_row and papers[0] != ("–", "–"):
        lines += [f"Paper, same protocol at its own α/β: WA {papers[0][0]}, UA {papers[0][1]}.", ""]
    extra = " paper WA (%) | paper UA (%) |" if per_row else ""
    lines += ["| " + " | ".join(sweep.params) + " | folds×repeats | WA (%) | UA (%) | EER (%) |"
              + "".join(f" {head} |" for _, head in aux) + extra,
              "|" + "---|" * (len(sweep.params) + 4 + len(aux) + 2 * per_row)]
    exps = [exp for _, exp in sweep.settings]
    flags, notes = significance(exps, protocol_groups(exps))
    for (values, exp), paper, flag in zip(sweep.settings, papers, flags):
        cells = [format_value(values[p]) for p in sweep.params] + _score_cells(exp.summary, aux, flag)
        lines.append("| " + " | ".join(cells + list(paper if per_row else ())) + " |")
    if sweep.selected is not None:
        counts = sweep.selection["counts"]
        chosen = ", ".join(f"{label} x{counts[label]}" for label in map(value_label, (v for v, _ in sweep.settings))
                           if label in counts)
        cells = [f"selected on validation (chosen: {chosen})"] + [""] * (len(sweep.params) - 1)
        cells += _score_cells(sweep.selected.summary, aux) + ["–", "–"] * per_row
        lines.append("| " + " | ".join(cells) + " |")
    if any(p != ("–", "–") for p in papers):
        lines += ["", ("Paper: its α/β chosen on validation (paper 5.1). Ours: one row per value (its test score), "
                       "and the row that chose a value per (fold, repeat) on validation.")]
    lines += notes + cost_line([e.summary for e in exps])
    return lines + ([""] + [f"- {n}" for n in sweep.notes] if sweep.notes else [])


def sweep_section(sweep: Sweep, out: Path, figures: list[str]) -> list[str]:
    from ser_mtl.analysis.plots import plot_confusion, plot_sweep

    lines = [f"### Sweep over {', '.join(sweep.params)} ({sweep.path})", "", *sweep_table(sweep)]
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
        name = f"sweep_{slug(sweep.name)}.png"
        plot_sweep(xs, aligned, first, "UA (%)", f"UA against {first} ({sweep.name})", out / name)
        figures.append(name)
        lines += ["", f"![UA against {first}]({name})"]
    sel = sweep.selected
    confusion = summed_confusion(sel) if sel is not None else None
    if confusion is not None:
        cname = f"confusion_{slug(sweep.name)}_selected.png"
        plot_confusion(*confusion, f"{sweep.name}: selected on validation", out / cname)
        figures.append(cname)
        text = f"Confusion matrix of the runs selected on validation (`{sel.path}`), summed over its runs:"
        lines += ["", text, "", f"![confusion selected on validation]({cname})"]
    return lines + [""]


def _sort_key(value: Any) -> tuple:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, float(value), "") if number else (1, 0.0, format_value(value))
