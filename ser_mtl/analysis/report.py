"""Markdown tables and PNG figures in the paper's form from cv and sweep folders (``ser-mtl report``).

Runbook::

    ser-mtl report runs/iemocap_10fold runs/iemocap_loso runs/alpha --out report/
    # -> report/report.md, report/confusion_*.png, report/sweep_*.png, report/eer.png,
    #    report/fig4_speakers.png (sweeps over the number of speakers: ser_mtl.analysis.figure4)

Each argument is a cv folder (``summary.json``; without one, its finished runs are summarised in
memory), a sweep folder (``sweep.json``) or a folder of such folders. Numbers are percent, mean ±
sample std over repeats of each repeat's fold average (``ser_mtl.analysis.summary``). Where an
experiment's protocol (from its resolved configuration) matches a published row, the paper's number
is shown beside ours in a "paper" column (``ser_mtl.analysis.paper_results``); a sweep table
(``ser_mtl.analysis.sweep_report``) shows it once above, as it belongs to the paper's own alpha/beta.

Significance: the rows of one protocol (corpus, target, scheme, label task) in the cross-validation
table, and a sweep's settings, are compared with their reference row: the proposed model (AAE with
gender + speaker tasks) where there is one, else the first. A UA (without emotion classes: the mean CCC of
dimensional emotion) that differs with p < 0.05 gets ``*``; the footnote names the test
(``ser_mtl.analysis.compare``) and gives every row's difference. Dimensional emotion also gets its own table
of CCC per dimension (``dimension_table``).
"""

from __future__ import annotations

from pathlib import Path

from ser_mtl.analysis.figure4 import figure4_section
from ser_mtl.analysis.report_tables import (
    Experiment,
    Sweep,
    dimension_table,
    discover,
    load_experiment,
    mark_baselines,
    per_fold_table,
    results_table,
    slug,
    summed_confusion,
)
from ser_mtl.analysis.sweep_report import sweep_section
from ser_mtl.io_utils import atomic_write_text

__all__ = ["discover", "load_experiment", "report", "summed_confusion"]


def report(dirs: list[str], out: str = "report") -> str:
    """``report_main``: write ``out/report.md`` and its PNG figures; returns the Markdown path."""
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
    if dims := dimension_table(experiments):
        lines += ["## Dimensional emotion", "",
                  ("Concordance correlation coefficient (CCC, Lin 1989) per dimension at utterance level (the "
                   "segments' predictions averaged), on the corpus's own scale; mean ± sample std over repeats of "
                   "each repeat's fold average. 1 is perfect agreement, 0 none."), "", *dims, ""]
    if sweeps:
        lines += ["## Sweeps", ""]
        for sweep in sweeps:
            lines += sweep_section(sweep, out_path, figures)
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
            if (confusion := summed_confusion(exp)) is not None:
                name = f"confusion_{slug(exp.name)}.png"
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
