"""SLURM scripts for a cross-validation: one array task per fold x repeat, then an aggregation job.

``ser-mtl cv ... --cv.slurm true`` writes, into ``DIR/slurm/``:

* ``cv_array.sbatch`` — ``#SBATCH --array=0-(N-1)`` for N = folds x repeats. Task t runs
  ``srun python -m ser_mtl.runs.cv <same args> --cv.only_task $SLURM_ARRAY_TASK_ID`` (that is
  ``ser-mtl cv``, called by module so that it does not depend on the console script): the cv runner
  maps t to (fold, repeat) with ``task_grid`` (repeat-major) and applies its usual resume logic.
  ``--signal=SIGUSR1@90`` + ``--requeue``: 90 s before the time limit Lightning's SLURM plugin saves
  ``hpc_ckpt_N.ckpt`` in the run folder and requeues the task, which resumes from that checkpoint.
* ``aggregate.sbatch`` — ``python -m ser_mtl.analysis.summary DIR`` (= ``ser-mtl aggregate DIR``;
  one CPU, no GPU).
* ``submit.sh`` — submits the array with ``sbatch --parsable``, then the aggregation job with
  ``--dependency=afterok:<array id>``. ``submit.sh 3,7`` resubmits only tasks 3 and 7 (finished
  tasks would be skipped anyway, but need not queue). If a task fails, the aggregation job never
  starts (afterok): fix, resubmit the failed ids, or run ``ser-mtl aggregate DIR`` by hand.

Two stages (``--cv.pretrain``): also ``pretrain_array.sbatch``, one task per repeat (``--cv.only_pretrain
$SLURM_ARRAY_TASK_ID``, same resources and requeueing); ``submit.sh`` submits it first and the fold array
with ``--dependency=afterok:<pretraining array id>``: every fold task waits for all pretrainings (a
per-repeat dependency would need the two arrays' indices to line up, which they do not). ``submit.sh
3,7`` resubmits fold tasks only (the pretrainings have finished; a fold whose pretraining has not
fails with a message saying so).

Packed runs (``--cv.pack K``): one array task per pack, ``--cv.only_pack $SLURM_ARRAY_TASK_ID`` with
``--cv.pack K`` (pack I = runs ``I*K .. I*K+K-1`` of ``task_grid``; ``ser_mtl.experiments.cv_pack``). On
the SIGUSR1 warning the pack's child saves the whole pack after the batch in progress and requeues the
task (``ser_mtl/experiments/pack_runner.py``), which resumes it with that epoch's remaining batches; a
task killed without warning loses at most the epoch in progress (the pack's state is saved every epoch).

Multi-GPU tasks (``--cv.slurm_gpus G`` with G > 1): the array asks for G tasks per node, as
Lightning's SLURM environment expects, and the configuration must set ``--trainer.devices G``.
The scripts ``cd`` to the folder they were written from, so relative ``--config`` paths hold.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser_mtl.io_utils import atomic_write_text

REQUEUE_SIGNAL = "SIGUSR1@90"  # Lightning's SLURMEnvironment listens for SIGUSR1 by default


@dataclass
class SlurmOptions:
    """Resources of each array task (``--cv.slurm_*``); None leaves the cluster default."""

    partition: str | None = None
    account: str | None = None
    gpus: int = 1
    cpus: int = 8
    mem: str = "32G"
    time: str = "24:00:00"
    job_name: str = "ser-mtl-cv"
    max_parallel: int | None = None
    extra: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    python: str = sys.executable


def add_slurm_arguments(parser) -> None:
    parser.add_argument("--cv.slurm", type=bool, default=False,
                        help="write SLURM scripts (array + aggregation + submit.sh) into OUT/slurm instead of running")
    parser.add_argument("--cv.slurm_partition", type=str | None, default=None, help="sbatch --partition")
    parser.add_argument("--cv.slurm_account", type=str | None, default=None, help="sbatch --account")
    parser.add_argument("--cv.slurm_gpus", type=int, default=1,
                        help="GPUs per task (--gres=gpu:G, G tasks per node; G > 1 needs --trainer.devices G)")
    parser.add_argument("--cv.slurm_cpus", type=int, default=8, help="sbatch --cpus-per-task")
    parser.add_argument("--cv.slurm_mem", type=str, default="32G", help="sbatch --mem (per node)")
    parser.add_argument("--cv.slurm_time", type=str, default="24:00:00", help="sbatch --time of one task")
    parser.add_argument("--cv.slurm_job_name", type=str, default="ser-mtl-cv", help="sbatch --job-name")
    parser.add_argument("--cv.slurm_max_parallel", type=int | None, default=None,
                        help="at most this many array tasks at once (--array=0-N%%M)")
    parser.add_argument("--cv.slurm_extra", type=list[str], default=[],
                        help='more sbatch options, e.g. ["--qos=high", "--constraint=a100"]')
    parser.add_argument("--cv.slurm_setup", type=list[str], default=[],
                        help='shell lines run before srun, e.g. ["module load cuda", "source .venv/bin/activate"]')
    parser.add_argument("--cv.slurm_python", type=str, default=sys.executable,
                        help="Python on the compute nodes (the script also honours $SER_MTL_PYTHON)")


def slurm_options_from(cv: Any) -> SlurmOptions:
    """``SlurmOptions`` from a parsed ``--cv.*`` namespace."""
    return SlurmOptions(partition=cv.slurm_partition, account=cv.slurm_account, gpus=cv.slurm_gpus,
                        cpus=cv.slurm_cpus, mem=cv.slurm_mem, time=cv.slurm_time, job_name=cv.slurm_job_name,
                        max_parallel=cv.slurm_max_parallel, extra=list(cv.slurm_extra),
                        setup=list(cv.slurm_setup), python=cv.slurm_python)


def array_spec(n_tasks: int, max_parallel: int | None = None) -> str:
    """``0-(N-1)``, throttled as ``0-(N-1)%M`` when ``max_parallel`` is set."""
    if n_tasks < 1:
        raise ValueError(f"a job array needs at least one task, got {n_tasks}")
    return f"0-{n_tasks - 1}" + (f"%{max_parallel}" if max_parallel else "")


def _sbatch_line(option: str) -> str:
    option = option.strip()
    return option if option.startswith("#SBATCH") else f"#SBATCH {option}"


def _header(lines: list[str], options: SlurmOptions) -> list[str]:
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.account:
        lines.append(f"#SBATCH --account={options.account}")
    return lines


def cv_task_command(config_args: list[str], folds: list[int], repeats: int, out: str, base_seed: int,
                    label: str | None, pretrain: list[str] | None = None, task_option: str = "--cv.only_task",
                    pack: int = 1) -> str:
    """The ``ser-mtl cv`` command line of one array task (task id left as ``$SLURM_ARRAY_TASK_ID``);
    ``task_option`` ``--cv.only_pretrain`` for a task of the pretraining array."""
    args = [*config_args, "--cv.folds", "[" + ",".join(map(str, folds)) + "]", "--cv.repeats", str(repeats),
            "--cv.out", out, "--cv.base_seed", str(base_seed)]
    if label:
        args += ["--cv.label", label]
    if pretrain is not None:
        args.append("--cv.pretrain=" + shlex.join(pretrain))  # one token whatever splits the command line
    if pack > 1:
        args += ["--cv.pack", str(pack)]
    return ('"$PYTHON" -m ser_mtl.runs.cv ' + " ".join(shlex.quote(a) for a in args)
            + f' {task_option} "$SLURM_ARRAY_TASK_ID"')


def render_array_script(task_command: str, n_tasks: int, log_dir: Path, workdir: Path,
                        options: SlurmOptions, comment: str = "", what: str = "one (fold, repeat) fit + test",
                        job_suffix: str = "") -> str:
    gpus = max(0, options.gpus)
    lines = ["#!/bin/bash",
             f"# Written by `ser-mtl cv --cv.slurm true`: one array task = {what}.",
             *(f"# {c}" for c in comment.splitlines()),
             f"#SBATCH --job-name={options.job_name}{job_suffix}",
             f"#SBATCH --array={array_spec(n_tasks, options.max_parallel)}",
             "#SBATCH --nodes=1",
             f"#SBATCH --ntasks-per-node={max(1, gpus)}"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    lines += [f"#SBATCH --cpus-per-task={options.cpus}", f"#SBATCH --mem={options.mem}",
              f"#SBATCH --time={options.time}"]
    _header(lines, options)
    lines += [f"#SBATCH --signal={REQUEUE_SIGNAL}",
              "#SBATCH --requeue",
              "#SBATCH --open-mode=append",
              f"#SBATCH --output={log_dir}/%A_%a.out",
              f"#SBATCH --chdir={workdir}",
              *(_sbatch_line(x) for x in options.extra),
              "set -eo pipefail",
              *options.setup,
              f'PYTHON="${{SER_MTL_PYTHON:-{options.python}}}"',
              'echo "task $SLURM_ARRAY_TASK_ID on $(hostname), restart count ${SLURM_RESTART_COUNT:-0}"',
              f"srun {task_command}", ""]
    return "\n".join(lines)


def render_aggregate_script(out: str, log_dir: Path, workdir: Path, options: SlurmOptions) -> str:
    lines = ["#!/bin/bash",
             "# Written by `ser-mtl cv --cv.slurm true`: summary.json once every array task succeeded.",
             f"#SBATCH --job-name={options.job_name}-aggregate",
             "#SBATCH --ntasks=1", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4G", "#SBATCH --time=00:30:00"]
    _header(lines, options)
    lines += [f"#SBATCH --output={log_dir}/aggregate_%j.out", f"#SBATCH --chdir={workdir}",
              "set -eo pipefail", *options.setup,
              f'PYTHON="${{SER_MTL_PYTHON:-{options.python}}}"',
              f'"$PYTHON" -m ser_mtl.analysis.summary {shlex.quote(out)}', ""]
    return "\n".join(lines)


SUBMIT_SCRIPT = """#!/bin/bash
# Submit the cross-validation array, then the aggregation job that runs once every task succeeded.
# Usage: submit.sh [TASK_IDS]   e.g. `submit.sh 3,7` resubmits only tasks 3 and 7.
set -eo pipefail
cd "$(dirname "$0")"
if [[ $# -gt 0 ]]; then
    array_job=$(sbatch --parsable --array="$1" cv_array.sbatch)
else
    array_job=$(sbatch --parsable cv_array.sbatch)
fi
array_job=${array_job%%;*}  # --parsable prints "id" or "id;cluster"
echo "submitted array job $array_job"
aggregate_job=$(sbatch --parsable --dependency=afterok:"$array_job" aggregate.sbatch)
echo "submitted aggregation job ${aggregate_job%%;*} (starts when every task of $array_job succeeded)"
"""


SUBMIT_PRETRAIN_SCRIPT = """#!/bin/bash
# Submit the pretraining array (one task per repeat), the cross-validation array once every pretraining
# succeeded, then the aggregation job once every fold task succeeded.
# Usage: submit.sh [TASK_IDS]   e.g. `submit.sh 3,7` resubmits only fold tasks 3 and 7 (no pretraining).
set -eo pipefail
cd "$(dirname "$0")"
if [[ $# -gt 0 ]]; then
    array_job=$(sbatch --parsable --array="$1" cv_array.sbatch)
else
    pretrain_job=$(sbatch --parsable pretrain_array.sbatch)
    pretrain_job=${pretrain_job%%;*}  # --parsable prints "id" or "id;cluster"
    echo "submitted pretraining array job $pretrain_job"
    array_job=$(sbatch --parsable --dependency=afterok:"$pretrain_job" cv_array.sbatch)
fi
array_job=${array_job%%;*}
echo "submitted array job $array_job"
aggregate_job=$(sbatch --parsable --dependency=afterok:"$array_job" aggregate.sbatch)
echo "submitted aggregation job ${aggregate_job%%;*} (starts when every task of $array_job succeeded)"
"""


def render_submit_all(submit_scripts: list[str]) -> str:
    """One script that runs several ``submit.sh`` (a sweep: one cross-validation per setting)."""
    lines = ["#!/bin/bash", "# Submit every cross-validation of this sweep (each: array + aggregation job).",
             "set -eo pipefail", 'cd "$(dirname "$0")"']
    lines += [f"bash {shlex.quote(path)}" for path in submit_scripts]
    return "\n".join(lines) + "\n"


def write_executable(path: Path, text: str) -> None:
    atomic_write_text(path, text)
    path.chmod(0o755)


def write_cv_scripts(config_args: list[str], folds: list[int], repeats: int, out: str, base_seed: int,
                     label: str | None, options: SlurmOptions, pretrain: list[str] | None = None,
                     pack: int = 1) -> dict[str, Any]:
    """Write ``OUT/slurm/{cv_array.sbatch, aggregate.sbatch, submit.sh}`` (and ``pretrain_array.sbatch``
    with ``pretrain``); returns their paths and N (array tasks: runs, or packs of ``pack`` runs)."""
    if options.gpus > 1 and not any(a.split("=", 1)[0] == "--trainer.devices" for a in config_args):
        print(f"[cv] warning: --cv.slurm_gpus {options.gpus} starts {options.gpus} ranks per task; set "
              f"--trainer.devices {options.gpus} so that Lightning uses them", file=sys.stderr)
    out_abs = Path(out).absolute()
    slurm_dir = out_abs / "slurm"
    log_dir = slurm_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not create the --output folder
    workdir = Path.cwd()
    n_runs = len(folds) * repeats
    n_tasks = -(-n_runs // pack)
    comment = (f"{len(folds)} folds {folds} x {repeats} repeats; run t -> repeat t // {len(folds)}, "
               f"fold folds[t % {len(folds)}]" + (f"; task i = the pack of runs {pack}*i .. {pack}*i+{pack - 1}"
                                                   if pack > 1 else "; task t = run t"))
    command = cv_task_command(config_args, folds, repeats, str(out_abs), base_seed, label, pretrain,
                              task_option="--cv.only_pack" if pack > 1 else "--cv.only_task", pack=pack)
    paths = {"array": slurm_dir / "cv_array.sbatch", "aggregate": slurm_dir / "aggregate.sbatch",
             "submit": slurm_dir / "submit.sh"}
    what = f"one pack of up to {pack} (fold, repeat) runs: a packed fit, then each run's test" if pack > 1 else (
        "one (fold, repeat) fit + test")
    atomic_write_text(paths["array"], render_array_script(command, n_tasks, log_dir, workdir, options, comment,
                                                          what=what))
    atomic_write_text(paths["aggregate"], render_aggregate_script(str(out_abs), log_dir, workdir, options))
    if pretrain is not None:
        paths["pretrain_array"] = slurm_dir / "pretrain_array.sbatch"
        pretrain_command = cv_task_command(config_args, folds, repeats, str(out_abs), base_seed, label, pretrain,
                                           task_option="--cv.only_pretrain")
        atomic_write_text(paths["pretrain_array"], render_array_script(
            pretrain_command, repeats, log_dir, workdir, options, f"{repeats} repeats; task t -> repeat t",
            what="the pretraining of one repeat", job_suffix="-pretrain"))
    write_executable(paths["submit"], SUBMIT_SCRIPT if pretrain is None else SUBMIT_PRETRAIN_SCRIPT)
    print(f"[cv] wrote {n_tasks} array tasks to {paths['array']}; submit with: {paths['submit']}")
    return {"n_tasks": n_tasks, **{k: str(v) for k, v in paths.items()}}
