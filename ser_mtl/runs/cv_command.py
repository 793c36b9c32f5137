"""``ser-mtl cv``: the ``--cv.*`` options of the cross-validation runner (``ser_mtl.runs.cv``).

``--cv.*`` is parsed here (``ser-mtl sweep`` shares the options); every other argument goes to
``ser-mtl fit``/``test`` unchanged (``ser_mtl.command_line.ForwardingCommand``).
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from ser_mtl.command_line import ForwardingCommand
from ser_mtl.runs.cluster import ClusterOptions
from ser_mtl.runs.cv import run_cv
from ser_mtl.runs.errors import CVError


def parse_int_list(text: str | None) -> list[int] | None:
    """Folds given to ``--cv.folds`` as ``[0,2,5]``, ``0,2,5``, ``3`` or a range ``0-4`` (inclusive)."""
    if text is None:
        return None
    values: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.strip().strip("[]").split(","))):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                values += list(range(int(lo), int(hi) + 1))
            else:
                values.append(int(part))
    except ValueError as err:
        raise CVError(f"--cv.folds {text!r}: expected integers like [0,1,2], 0,1,2 or 0-9") from err
    return values


def parse_pretrain(value: str | list[str] | None) -> list[str] | None:
    """``--cv.pretrain``: one shell-quoted string (``"--config p.yaml --data.root '/data/Libri Speech'"``),
    split with ``shlex``, or a list."""
    if value is None:
        return None
    try:
        args = list(value) if isinstance(value, list) else shlex.split(value)
    except ValueError as err:  # "No closing quotation"
        raise CVError(f"--cv.pretrain {value!r}: {err}") from err
    if not args:
        raise CVError("--cv.pretrain is empty; give the pretraining's arguments, e.g. "
                      '"--config configs/librispeech_pretrain.yaml --data.root /data/LibriSpeech"')
    return [str(a) for a in args]


def add_cv_arguments(parser) -> None:
    """The ``--cv.*`` options (shared by ``ser-mtl cv`` and ``ser-mtl sweep``); a boolean option given alone
    (``--cv.plan``) means true, as ``--cv.plan true``."""
    add = parser.add_argument
    add("--cv.out", type=str, required=True, help="output folder: one subfolder per fold x repeat, cv.json, summary.json")
    add("--cv.folds", type=str | None, default=None, help="fold indices: [0,1,2], 0,1,2 or 0-9; default every fold")
    add("--cv.repeats", type=int, default=1, help="complete cross-validations with fresh seeds (the paper uses 10)")
    add("--cv.base_seed", type=int, default=0, help="run (fold, repeat) is seeded with derive_seed(base, fold, repeat)")
    add("--cv.label", type=str | None, default=None, help="row name in reports (default: from the configuration)")
    add("--cv.in_process", type=bool, default=False, nargs="?", const=True,
        help="run fit/test in this process (faster start, but a crash ends the runner)")
    add("--cv.plan", type=bool, default=False, nargs="?", const=True, help="print the fits and pretrainings and an upper bound of their "
        "device-hours (a few batches timed on the configured device); train nothing")
    add("--cv.fail_fast", type=bool, default=False, nargs="?", const=True, help="stop at the first failed run (default: run the others)")
    add("--cv.jobs", type=int, default=1, help="runs at a time on this machine, each in its own child processes; "
        "CPU threads are divided between them (the results depend only on the threads each run gets: set "
        "OMP_NUM_THREADS to compare runs exactly)")
    add("--cv.devices", type=str | None, default=None, help="GPUs the jobs are spread over, round-robin: 0,1 "
        "(several jobs may share one); cpu for none; default every visible GPU, else the CPU")
    add("--cv.pretrain", type=str | None, default=None,
        help='pretrain once per repeat with these `ser-mtl fit` arguments (one shell-quoted string, e.g. "--config '
             'configs/librispeech_pretrain.yaml --data.root /data/LibriSpeech") and start every fold of that repeat '
             "from its best.ckpt (--model.init_from)")
    add("--cv.slurm", type=bool, default=False, nargs="?", const=True,
        help="submit the runs to SLURM as job arrays through submitit (logs in OUT/slurm) instead of running them")
    add("--cv.slurm_partition", type=str | None, default=None, help="sbatch --partition")
    add("--cv.slurm_account", type=str | None, default=None, help="sbatch --account")
    add("--cv.slurm_gpus", type=int, default=1, help="GPUs per task (G > 1: G ranks per task, set --trainer.devices G)")
    add("--cv.slurm_cpus", type=int, default=8, help="sbatch --cpus-per-task")
    add("--cv.slurm_mem", type=str, default="32G", help="sbatch --mem (per node)")
    add("--cv.slurm_time", type=str, default="24:00:00", help="time limit of one task (D-HH:MM:SS, HH:MM:SS, minutes)")
    add("--cv.slurm_job_name", type=str, default="ser-mtl", help="sbatch --job-name")
    add("--cv.slurm_max_parallel", type=int | None, default=None, help="at most this many array tasks at once")
    add("--cv.slurm_max_requeues", type=int, default=3, help="requeues of a task that reaches its time limit")
    add("--cv.slurm_extra", type=list[str], default=[], help='more sbatch options, e.g. ["--qos=high", "--constraint=a100"]')
    add("--cv.slurm_setup", type=list[str], default=[],
        help='shell lines run before the task, e.g. ["module load cuda", "source .venv/bin/activate"]')
    add("--cv.slurm_python", type=str, default=sys.executable, help="Python on the compute nodes")


def cluster_options(cv: Any) -> ClusterOptions:
    """``ClusterOptions`` from a parsed ``--cv.*`` namespace (``--cv.slurm_extra`` ``--qos=high`` -> ``qos: high``)."""
    extra = {}
    for option in cv.slurm_extra:
        name, _, value = option.strip().removeprefix("#SBATCH").strip().lstrip("-").partition("=")
        extra[name.replace("-", "_")] = value if value else True
    options = ClusterOptions(partition=cv.slurm_partition, account=cv.slurm_account, gpus=cv.slurm_gpus,
                             cpus=cv.slurm_cpus, mem=cv.slurm_mem, time=cv.slurm_time, job_name=cv.slurm_job_name,
                             max_parallel=cv.slurm_max_parallel, max_requeues=cv.slurm_max_requeues, extra=extra,
                             setup=list(cv.slurm_setup), python=cv.slurm_python)
    return options.check() if cv.slurm else options  # a bad option: one line before anything is written


def cv_kwargs(ns) -> dict[str, Any]:
    """``run_cv`` keyword arguments from a parsed ``--cv.*`` namespace."""
    cv = ns.cv
    return {"folds": parse_int_list(cv.folds), "repeats": cv.repeats, "out": cv.out, "base_seed": cv.base_seed,
            "label": cv.label, "in_process": cv.in_process, "fail_fast": cv.fail_fast, "jobs": cv.jobs,
            "devices": cv.devices, "pretrain": parse_pretrain(cv.pretrain), "slurm": cv.slurm,
            "cluster_options": cluster_options(cv), "plan_only": cv.plan}


cv_main = ForwardingCommand(
    "ser-mtl cv", ("--cv.",), lambda options, config_args: run_cv(config_args, **cv_kwargs(options)),
    "Cross-validation: folds x repeats of fit + test, resumable (re-running the same command skips "
    "finished runs).", add_options=add_cv_arguments, errors=(CVError, ValueError))
