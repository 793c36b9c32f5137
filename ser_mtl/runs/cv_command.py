"""``ser-mtl cv``: the ``--cv.*`` options of the cross-validation runner (``ser_mtl.runs.cv``).

``--cv.*`` is parsed here (also by ``ser-mtl sweep``, which shares the options); every other
argument goes to ``ser-mtl fit``/``test`` unchanged (``ser_mtl.command_line.ForwardingCommand``).
"""

from __future__ import annotations

from typing import Any

from ser_mtl.command_line import ForwardingCommand
from ser_mtl.runs.cv import CVError, run_cv


def parse_int_list(text: str | None) -> list[int] | None:
    """Folds given to ``--cv.folds`` as ``[0,2,5]``, ``0,2,5``, ``3`` or a range ``0-4`` (inclusive);
    None stays None."""
    if text is None:
        return None
    raw = text.strip().strip("[]")
    values: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in raw.split(","))):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                values += list(range(int(lo), int(hi) + 1))
            else:
                values.append(int(part))
    except ValueError as err:
        raise CVError(f"--cv.folds {text!r}: expected integers like [0,1,2], 0,1,2 or 0-9") from err
    return values


def add_cv_arguments(parser) -> None:
    """The ``--cv.*`` options (shared by ``ser-mtl cv`` and ``ser-mtl sweep``)."""
    from ser_mtl.runs.slurm import add_slurm_arguments

    parser.add_argument("--cv.out", type=str, required=True,
                        help="output folder: one subfolder per fold x repeat, cv.json, summary.json")
    parser.add_argument("--cv.folds", type=str | None, default=None,
                        help="fold indices: [0,1,2], 0,1,2 or 0-9; default every fold of data.scheme")
    parser.add_argument("--cv.repeats", type=int, default=1,
                        help="complete cross-validations with fresh seeds (the paper uses 10)")
    parser.add_argument("--cv.base_seed", type=int, default=0,
                        help="run (fold, repeat) is seeded with derive_seed(base_seed, fold, repeat)")
    parser.add_argument("--cv.label", type=str | None, default=None,
                        help="row name in reports (default: model and tasks from the configuration)")
    parser.add_argument("--cv.in_process", type=bool, default=False,
                        help="run fit/test in this process (faster start, but a crash ends the runner)")
    parser.add_argument("--cv.fail_fast", type=bool, default=False,
                        help="stop at the first failed run (default: run the others, then report)")
    parser.add_argument("--cv.only_task", type=int | None, default=None,
                        help="run only this task id of the fold x repeat grid (what a SLURM array task does)")
    parser.add_argument("--cv.jobs", type=int, default=1,
                        help="runs at a time on this machine, each in its own child processes; CPU threads "
                             "are divided between them (the results do not depend on it)")
    parser.add_argument("--cv.devices", type=str | None, default=None,
                        help="GPUs the jobs are spread over, round-robin, as this process numbers them: 0,1 "
                             "(several jobs may share one); cpu for none; default every visible GPU, else CPU")
    parser.add_argument("--cv.pack", type=int, default=1,
                        help="fit the runs that need a fit K at a time (grid order) as one packed network in one "
                             "child process on the job's device, then test each as usual; 1: one fit per run")
    parser.add_argument("--cv.only_pack", type=int | None, default=None,
                        help="with --cv.pack K: run only pack I, the runs I*K..I*K+K-1 of the fold x repeat grid "
                             "(what a packed SLURM array task does)")
    add_slurm_arguments(parser)
    add_pretrain_arguments(parser)


def add_pretrain_arguments(parser) -> None:
    """``--cv.pretrain`` / ``--cv.only_pretrain``: two-stage runs (``ser_mtl.runs.pretrain_stage``)."""
    parser.add_argument("--cv.pretrain", type=str | None, default=None,
                        help='pretrain once per repeat with these `ser-mtl fit` arguments (one shell-quoted string, '
                             'e.g. "--config configs/librispeech_pretrain.yaml --data.root /data/LibriSpeech") and '
                             "start every fold of that repeat from its best.ckpt (--model.init_from)")
    parser.add_argument("--cv.only_pretrain", type=int | None, default=None,
                        help="run only the pretraining of this repeat (what a SLURM pretraining array task does)")


def pretrain_kwargs(cv) -> dict[str, Any]:
    """``run_cv``'s pretraining keyword arguments from a parsed ``--cv.*`` namespace."""
    from ser_mtl.runs.pretrain_stage import PretrainError, parse_pretrain

    try:
        pretrain = parse_pretrain(cv.pretrain)
    except (PretrainError, ValueError) as err:  # shlex: "No closing quotation"
        raise CVError(f"--cv.pretrain {cv.pretrain!r}: {err}") from err
    return {"pretrain": pretrain, "only_pretrain": cv.only_pretrain}


def cv_kwargs(ns) -> dict[str, Any]:
    """``run_cv`` keyword arguments from a parsed ``--cv.*`` namespace."""
    from ser_mtl.runs.slurm import slurm_options_from

    cv = ns.cv
    return {"folds": parse_int_list(cv.folds), "repeats": cv.repeats, "out": cv.out, "base_seed": cv.base_seed,
            "slurm": cv.slurm, "only_task": cv.only_task, "in_process": cv.in_process, "label": cv.label,
            "fail_fast": cv.fail_fast, "slurm_options": slurm_options_from(cv), "jobs": cv.jobs,
            "devices": cv.devices, "pack": cv.pack, "only_pack": cv.only_pack, **pretrain_kwargs(cv)}


def _cv(options, config_args: list[str]) -> None:
    run_cv(config_args, **cv_kwargs(options))


cv_main = ForwardingCommand(
    "ser-mtl cv", ("--cv.",), _cv,
    "Cross-validation: folds x repeats of fit + test, resumable (re-running the same command skips "
    "finished runs).", add_options=add_cv_arguments, errors=(CVError, ValueError))
