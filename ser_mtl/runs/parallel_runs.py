"""Several cross-validation runs at once on one machine (``ser-mtl cv --cv.jobs N --cv.devices LIST``).

Each (fold, repeat) run is still ``cv.run_one``: its own lock, child processes, logs and resume
(``ser_mtl.runs.stages``). This module decides *where* each runs and runs ``N`` of them at a
time:

* ``plan_slots`` makes ``N`` slots. Slot ``i`` runs on device ``devices[i % len(devices)]`` (so
  ``N`` may exceed the number of GPUs: several runs share one), and every stage child of that slot
  gets ``CUDA_VISIBLE_DEVICES=<that device>`` (or ``""``: CPU only) and ``OMP_NUM_THREADS`` /
  ``MKL_NUM_THREADS = max(1, cores // N)`` (torch takes its intra-op thread count from
  ``OMP_NUM_THREADS``), unless the runner's environment sets those thread variables itself.
  ``--cv.devices`` counts the devices as this process sees them (``0`` = ``cuda:0``, also under a
  ``CUDA_VISIBLE_DEVICES`` set by SLURM); the child is given the real name (e.g. ``3`` or a
  ``GPU-...`` UUID). Default: every visible GPU, or the CPU when there is none.
* ``run_in_slots`` runs the tasks: one worker thread per slot pulls the next task in grid order.
  With one slot it runs in the calling thread, exactly as the sequential runner always did.

Scheduling changes nothing in the results: a run's seed is ``derive_seed(base, fold, repeat)``
whatever slot runs it, and results come back in task order. An exception escaping a task (the
runner's ``CVError``, or any failure under ``--cv.fail_fast``) lets no new task start; the tasks
already running finish, and then the first such exception is raised.

Why threads and not a process pool: each stage is a child process already, so a thread only waits.
A worker thread starts its children and waits for them (``stages.CLIBackend.run_stage``); it never
ends while one runs, which matters because Linux sends ``PR_SET_PDEATHSIG`` when the *thread* that
started a child ends. SIGTERM to the runner reaches every running child through ``stages``; the
main thread waits in short ``join`` slices so that its signal handler runs promptly.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ser_mtl.runs.stages import request_stop, stop_requested

Task = TypeVar("Task")
Result = TypeVar("Result")

CPU = "cpu"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


class JobsError(ValueError):
    """``--cv.jobs`` / ``--cv.devices`` cannot be honoured as given."""


@dataclass(frozen=True)
class Slot:
    """Where one worker runs its tasks: ``device`` is the child's ``CUDA_VISIBLE_DEVICES`` ("" = CPU)."""

    index: int
    device: str | None  # None: the environment is left as the runner's (sequential default)
    threads: int | None
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        where = "CPU" if self.device == "" else "inherited devices" if self.device is None else f"GPU {self.device}"
        return where + (f", {self.threads} CPU threads" if self.threads else "")


def visible_devices(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs this process sees, by the names a child's ``CUDA_VISIBLE_DEVICES`` takes.

    ``CUDA_VISIBLE_DEVICES`` when it is set (``""`` or ``-1``: none), else ``0 .. count-1`` from
    ``torch.cuda.device_count()`` (which counts through NVML without creating a CUDA context).
    """
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        names = [name.strip() for name in listed.split(",") if name.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU
        return [] if not names or names[0].startswith("-") else names
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def parse_devices(text: str | Sequence[Any] | None) -> list[str] | None:
    """``--cv.devices``: ``0,1``, ``[0, 1]``, ``cpu`` or None (automatic), as a list of strings."""
    if text is None:
        return None
    items = list(text) if isinstance(text, list | tuple) else str(text).strip().strip("[]").split(",")
    names = [str(item).strip().lower() for item in items]
    if not names or any(not name for name in names):
        raise JobsError(f"--cv.devices {text!r}: expected device numbers like 0,1 (or cpu)")
    return names


def plan_slots(jobs: int, devices: str | Sequence[Any] | None = None, *, visible: list[str] | None = None,
               cores: int | None = None, environ: dict[str, str] | None = None) -> list[Slot]:
    """``jobs`` slots over ``devices`` round-robin, each with its children's environment.

    Args:
        jobs: runs at a time (``--cv.jobs``), >= 1.
        devices: ``--cv.devices`` (indices into the visible GPUs, or ``cpu``); None: every visible GPU,
            or the CPU. With ``jobs == 1`` and no ``devices`` the children inherit the runner's
            environment unchanged (what ``ser-mtl cv`` has always done).
        visible: the visible GPUs (default ``visible_devices()``); cores: usable CPU cores (default
            this process's affinity mask); environ: the runner's environment (default ``os.environ``).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise JobsError(f"--cv.jobs must be an integer >= 1, got {jobs!r}")
    names = parse_devices(devices)
    if jobs == 1 and names is None:
        return [Slot(0, None, None)]
    environ = os.environ if environ is None else environ
    if names is None or names != [CPU]:
        visible = visible_devices(environ) if visible is None else visible
    if names is None:
        targets = list(visible) or [""]
    elif names == [CPU]:
        targets = [""]
    else:
        targets = [_device_name(name, visible, devices) for name in names]
        if len(set(targets)) != len(targets):
            raise JobsError(f"--cv.devices {devices!r} names a device twice; to run several jobs on one "
                            "device raise --cv.jobs instead")
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    threads = max(1, cores // jobs)
    thread_env = {} if any(v in environ for v in THREAD_VARIABLES) else {v: str(threads) for v in THREAD_VARIABLES}
    shown = int(thread_env["OMP_NUM_THREADS"]) if thread_env else None
    return [Slot(i, targets[i % len(targets)], shown, {"CUDA_VISIBLE_DEVICES": targets[i % len(targets)],
                                                        **thread_env})
            for i in range(jobs)]


def _device_name(name: str, visible: list[str], given: Any) -> str:
    if name == CPU:
        raise JobsError(f"--cv.devices {given!r}: cpu cannot be mixed with GPUs")
    if not name.isdigit():
        raise JobsError(f"--cv.devices {given!r}: {name!r} is not a device number (0, 1, ... or cpu)")
    if int(name) >= len(visible):
        seen = f"{len(visible)} visible GPU(s) ({', '.join(visible)})" if visible else "no visible GPU"
        raise JobsError(f"--cv.devices {given!r}: there is no GPU {name}; this process sees {seen}")
    return visible[int(name)]


class SlotBackend:
    """A cv backend as one slot sees it: every stage child gets the slot's environment."""

    def __init__(self, backend: Any, env: dict[str, str]) -> None:
        self.backend, self.env = backend, dict(env)

    def run_stage(self, stage: str, args: list[str], run_dir: Any, env: dict[str, str] | None = None) -> None:
        self.backend.run_stage(stage, args, run_dir, env={**self.env, **(env or {})})

    def __getattr__(self, name: str) -> Any:  # num_folds, resolve_config, ...
        return getattr(self.backend, name)


def bind(backend: Any, slot: Slot) -> Any:
    """``backend`` for a task on ``slot`` (unchanged when the slot sets no environment)."""
    return SlotBackend(backend, slot.env) if slot.env else backend


def run_in_slots(tasks: Sequence[Task], work: Callable[[Task, Slot], Result], slots: list[Slot],
                 poll_s: float = 0.2) -> list[Result]:
    """``work(task, slot)`` for every task, ``len(slots)`` at a time; results in task order.

    No task starts once ``stages.stop_requested()`` (SIGTERM) or once a task raised; the returned
    list then holds only the tasks that finished. The first exception a task raised is re-raised
    after every running task has ended.
    """
    if len(slots) == 1:
        results = []
        for task in tasks:
            if stop_requested():
                break
            results.append(work(task, slots[0]))
        return results
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(tasks)):
        pending.put(i)
    done: dict[int, Result] = {}
    errors: list[BaseException] = []

    def worker(slot: Slot) -> None:
        while not errors and not stop_requested():
            try:
                i = pending.get_nowait()
            except queue.Empty:
                return
            try:
                done[i] = work(tasks[i], slot)
            except BaseException as err:  # noqa: BLE001 - handed to the main thread, re-raised there
                errors.append(err)

    threads = [threading.Thread(target=worker, args=(slot,), name=f"cv-job-{slot.index}") for slot in slots]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(poll_s)  # short waits: the main thread's signal handlers run in between
    except BaseException:  # Ctrl-C in the runner: stop every stage, then wait for the workers
        request_stop()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]
    return [done[i] for i in sorted(done)]
