"""The paper's Figure 4 in ``ser-mtl report``: every metric against the number of speakers swept.

One figure per report, ``fig4_speakers.png`` (sweeps: README.md, "Reproducing the paper"), collects
**every** sweep over ``data.aux_speakers`` or ``data.speakers`` (the x axis), one panel per metric with
the paper's letters, a sweep one line per combination of its other swept parameters. A panel no sweep
has, or a setting whose speaker count is not a number (``null``: all speakers), is left out and noted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ser_mtl.analysis.summary import format_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ser_mtl.analysis.report_tables import Sweep

SPEAKER_PARAMS = ("data.aux_speakers", "data.speakers")
PANELS = (("ua", "(a) emotion recognition", "UA (%)"),
          ("gender_acc", "(b) gender identification", "accuracy (%)"),
          ("speaker_acc", "(c) speaker identification", "accuracy (%)"),
          ("eer", "(d) speaker verification", "EER (%)"))
FIGURE_NAME = "fig4_speakers.png"


def _speaker_param(sweep: Sweep) -> str | None:
    return next((p for p in sweep.params if p in SPEAKER_PARAMS), None)


def figure4_panels(sweeps: list[Sweep]) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """Panels ``(title, ylabel, {series: (x ascending, means %, stds %)})`` of speaker-count sweeps; notes."""
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
                if isinstance(values[param], bool) or not isinstance(values[param], (int, float)):
                    notes.append(f"Figure 4: {sweep.name} setting {param}={format_value(values[param])} "
                                 "is not a number of speakers; not plotted")
                    continue
                others = ", ".join(f"{p}={format_value(values[p])}" for p in sweep.params if p != param)
                name = f"{sweep.name} ({param}{', ' + others if others else ''})"
                points.setdefault(name, []).append((values[param], 100 * s[f"{metric}_mean"],
                                                    100 * (s.get(f"{metric}_std") or 0.0)))
            for name, pts in points.items():
                series[name] = tuple(list(column) for column in zip(*sorted(pts)))  # (x, means, stds)
        if series:
            panels.append((title, ylabel, series))
        elif found:
            notes.append(f"Figure 4 {title}: no speaker-count sweep has {metric} in its summaries; panel left out")
    return panels, list(dict.fromkeys(notes))  # a setting's note once, not once per panel


def figure4(sweeps: list[Sweep]) -> tuple[Figure | None, list[str]]:
    """The Figure 4 panels as one figure (None when no speaker-count sweep has any metric) and notes."""
    from ser_mtl.analysis.plots import panels_figure

    panels, notes = figure4_panels(sweeps)
    title = "mean ± std over repeats against the speakers drawn"
    return (panels_figure(panels, "number of speakers", title) if panels else None), notes


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
