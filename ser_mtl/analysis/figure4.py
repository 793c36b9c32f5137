"""The paper's Figure 4 in ``ser-mtl report``: every metric against the number of speakers swept.

Runbook (Fig. 4a from an emotion sweep, 4b-4d from single-task gender / speaker sweeps)::

    ser-mtl sweep --config ... --sweep.param data.aux_speakers --sweep.values 0,100,300,600 --cv.out runs/f4a
    ser-mtl sweep --config ... --sweep.param data.speakers --sweep.values 100,300,600 --cv.out runs/f4_gender
    ser-mtl report runs/f4a runs/f4_gender runs/f4_speaker --out report/   # -> report/fig4_speakers.png

Rule: one figure per report, ``fig4_speakers.png``, collecting **every** sweep of the report whose
parameters include ``data.aux_speakers`` or ``data.speakers`` (the swept number of speakers is the
x axis). It has one panel per metric, in the paper's order and with its letters: (a) emotion UA,
(b) gender accuracy, (c) speaker-identification accuracy, (d) speaker-verification EER. In each
panel every such sweep that has the metric is one line (a sweep's other swept parameters, if any,
split it into one line per combination), each point the mean ± std over repeats of that setting's
``summary.json`` (``<metric>_mean`` / ``<metric>_std``, percent). So panels may come from different
sweeps; a panel no sweep has is left out and the report says so, as it does for a setting whose
speaker count is not a number (``null``: all speakers) or that has no finished runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ser_mtl.runs.sweep import format_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ser_mtl.analysis.report import Sweep

SPEAKER_PARAMS = ("data.aux_speakers", "data.speakers")
PANELS = (("ua", "(a) emotion recognition", "UA (%)"),
          ("gender_acc", "(b) gender identification", "accuracy (%)"),
          ("speaker_acc", "(c) speaker identification", "accuracy (%)"),
          ("eer", "(d) speaker verification", "EER (%)"))
FIGURE_NAME = "fig4_speakers.png"


def _speaker_param(sweep: Sweep) -> str | None:
    return next((p for p in sweep.params if p in SPEAKER_PARAMS), None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def figure4_panels(sweeps: list[Sweep]) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """The panels ``(title, ylabel, {series: (x, means %, stds %)})`` of the speaker-count sweeps
    among ``sweeps`` (points sorted by x), and notes on what was left out."""
    notes: list[str] = []
    found = [(s, _speaker_param(s)) for s in sweeps if _speaker_param(s)]
    panels = []
    for metric, title, ylabel in PANELS:
        series: dict[str, tuple[list[float], list[float], list[float]]] = {}
        for sweep, param in found:
            points: dict[str, list[tuple[float, float, float]]] = {}
            for values, exp in sweep.settings:
                s = exp.summary
                if s.get(f"{metric}_mean") is None:
                    continue
                if not _is_number(values[param]):
                    note = (f"Figure 4: {sweep.name} setting {param}={format_value(values[param])} is not a "
                            "number of speakers; not plotted")
                    if note not in notes:
                        notes.append(note)
                    continue
                others = ", ".join(f"{p}={format_value(values[p])}" for p in sweep.params if p != param)
                name = f"{sweep.name} ({param}{', ' + others if others else ''})"
                points.setdefault(name, []).append((values[param], 100 * s[f"{metric}_mean"],
                                                    100 * (s.get(f"{metric}_std") or 0.0)))
            for name, pts in points.items():
                pts.sort()
                series[name] = ([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts])
        if series:
            panels.append((title, ylabel, series))
        elif found:
            notes.append(f"Figure 4 {title}: no speaker-count sweep has {metric} in its summaries; panel left out")
    return panels, notes


def figure4(sweeps: list[Sweep]) -> tuple[Figure | None, list[str]]:
    """The Figure 4 panels as one figure (None when no speaker-count sweep has any metric) and notes."""
    from ser_mtl.analysis.plots import panels_figure

    panels, notes = figure4_panels(sweeps)
    if not panels:
        return None, notes
    fig = panels_figure(panels, "number of speakers", "mean ± std over repeats against the speakers drawn")
    return fig, notes


def figure4_section(sweeps: list[Sweep], out: Path, figures: list[str]) -> list[str]:
    """The report's Figure 4 section (empty without speaker-count sweeps); writes ``out/fig4_speakers.png``."""
    from ser_mtl.analysis.plots import save_figure

    if not any(_speaker_param(s) for s in sweeps):
        return []
    fig, notes = figure4(sweeps)
    lines = ["## Number of speakers (paper Figure 4)", "",
             ("Every sweep over `data.aux_speakers` or `data.speakers` in this report, one line per sweep in each "
              "panel whose metric it has; mean ± std over repeats."), ""]
    if fig is not None:
        save_figure(fig, out / FIGURE_NAME)
        figures.append(FIGURE_NAME)
        lines += [f"![Figure 4]({FIGURE_NAME})", ""]
    return lines + [f"- {n}" for n in notes] + ([""] if notes else [])
