"""What the cluster says before a submission, and what this folder submitted (``ser_mtl.runs.cluster``).

``sinfo``: the partition's CPUs, memory and GRES (`check_partition`: tasks it could never start are refused);
``scontrol show config``: ``MaxArraySize`` (larger arrays are split); ``squeue``: which array tasks of an
earlier submission still wait or run (`live_jobs`), against ``queued.json`` in the submission folder (run folder
-> task id, `record_queued`), so submitting the same command again does not queue a run twice. Each answers
None (no check) where its command is missing or fails.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.errors import CVError

if TYPE_CHECKING:
    from ser_mtl.runs.cluster import ClusterOptions

QUEUED_NAME = "queued.json"


def _run(command: list[str]) -> str | None:
    """``command``'s stdout, None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def partition_resources(partition: str | None) -> list[tuple[str, int, int, str]] | None:
    """(partition, CPUs per node, memory MB per node, GRES) of each node group ``sinfo`` lists for ``partition``
    (None: the default one, marked ``*``); None when sinfo does not answer (no check is then possible)."""
    shown = _run(["sinfo", "-h", "-o", "%P|%c|%m|%G"])
    if shown is None:
        return None
    groups = []
    for line in shown.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        name, cpus, mem, gres = parts
        default = name.endswith("*")
        name = name.rstrip("*")
        if (partition is None and default) or name == partition:
            groups.append((name, int(re.sub(r"\D.*", "", cpus) or 0), int(re.sub(r"\D.*", "", mem) or 0), gres))
    return groups


def check_partition(options: ClusterOptions) -> None:
    """`CVError` when ``sinfo`` says the partition cannot run a task as asked: no such partition, no GPU for
    ``--cv.slurm_gpus``, fewer CPUs per node than ``--cv.slurm_cpus`` (such a task would wait forever)."""
    groups = partition_resources(options.partition)
    if groups is None:
        return  # no sinfo here: sbatch decides
    where = f"partition {options.partition}" if options.partition else "the default partition"
    if not groups:
        raise CVError(f"--cv.slurm_partition {options.partition}: sinfo lists no such partition")
    if options.gpus and not any("gpu" in gres for *_, gres in groups):
        raise CVError(f"--cv.slurm_gpus {options.gpus}: {where} has no GPUs (sinfo GRES: "
                      f"{', '.join(sorted({g for *_, g in groups}))}); pass --cv.slurm_gpus 0 on a CPU cluster")
    most = max(cpus for _, cpus, _, _ in groups)
    if options.cpus > most:
        raise CVError(f"--cv.slurm_cpus {options.cpus}: the nodes of {where} have at most {most} CPUs, so the "
                      f"tasks would never start; pass --cv.slurm_cpus {most} or less")


def max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` (``scontrol show config``; SLURM's default is 1001), None when scontrol
    does not answer: an array of more tasks is refused by sbatch, so larger ones are split."""
    shown = _run(["scontrol", "show", "config"])
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", shown or "", flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def read_queued(folder: Path) -> dict[str, str]:
    """Run folder -> SLURM task id of what this submission folder queued before (empty when nothing)."""
    path = Path(folder) / QUEUED_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def record_queued(folder: Path, tasks: dict[str, str]) -> None:
    """Add run folder -> task id pairs to the submission folder's record (atomic)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(folder) / QUEUED_NAME, {**read_queued(folder), **tasks})


def live_jobs(job_ids: set[str]) -> set[str]:
    """Those of ``job_ids`` (array tasks ``101_3``) that ``squeue`` still lists, pending or running, one line per
    array task (``-r``); empty when none was asked or squeue does not answer."""
    if not job_ids:
        return set()
    shown = _run(["squeue", "-h", "-r", "-o", "%i"])
    return {line.strip() for line in (shown or "").splitlines()} & job_ids
