"""Runs on this machine, ``N`` at a time (``--cv.jobs N --cv.devices LIST``), each ``lifecycle.run_folder``.

Slot ``i`` of ``plan_slots`` runs on device ``devices[i % len(devices)]`` (several slots may share a
GPU, and then count its time shared: ``Slot.shared_by``): its stage children get ``CUDA_VISIBLE_DEVICES``
(``""``: CPU) and ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS = max(1, cores // N)`` unless the runner's
environment sets those. ``run_in_slots``
runs the tasks in a thread pool, a free slot per task; a pool thread only waits for its children and
outlives them (``PR_SET_PDEATHSIG``). No result depends on the slot. After SIGTERM, or once a task
raised, no new task starts; the running ones finish and the first exception is raised.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ser_mtl.runs.stages import request_stop, stop_requested

_SKIPPED = object()  # a task not started: SIGTERM, or another task raised
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
    shared_by: int = 1  # the slots on this device (itself included): its runs' device time is counted shared

    def describe(self) -> str:
        where = "CPU" if self.device == "" else "inherited devices" if self.device is None else f"GPU {self.device}"
        return where + (f", {self.threads} CPU threads" if self.threads else "")


def visible_devices(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs this process sees, named as a child's ``CUDA_VISIBLE_DEVICES`` takes them: that variable
    when set (``""`` or ``-1``: none), else ``0 .. torch.cuda.device_count() - 1``."""
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
    """``jobs`` slots over ``devices`` (indices into the ``visible`` GPUs, or ``cpu``; None: every visible GPU,
    or the CPU) round-robin. One job and no devices: the children inherit the runner's environment."""
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
    placed = [targets[i % len(targets)] for i in range(jobs)]
    return [Slot(i, device, shown, {"CUDA_VISIBLE_DEVICES": device, **thread_env}, placed.count(device))
            for i, device in enumerate(placed)]


def _device_name(name: str, visible: list[str], given: Any) -> str:
    if name == CPU:
        raise JobsError(f"--cv.devices {given!r}: cpu cannot be mixed with GPUs")
    if not name.isdigit():
        raise JobsError(f"--cv.devices {given!r}: {name!r} is not a device number (0, 1, ... or cpu)")
    if int(name) >= len(visible):
        seen = f"{len(visible)} visible GPU(s) ({', '.join(visible)})" if visible else "no visible GPU"
        raise JobsError(f"--cv.devices {given!r}: there is no GPU {name}; this process sees {seen}")
    return visible[int(name)]


@dataclass
class SlotBackend:
    """A backend as one slot sees it: every stage child gets the slot's environment; ``shared_by``: the
    slots on its device."""

    backend: Any
    env: dict[str, str]
    shared_by: int = 1

    def run_stage(self, stage: str, args: list[str], run_dir: Any, env: dict[str, str] | None = None) -> None:
        self.backend.run_stage(stage, args, run_dir, env={**self.env, **(env or {})})


def bind(backend: Any, slot: Slot) -> Any:
    """``backend`` for a task on ``slot`` (unchanged when the slot sets no environment)."""
    return SlotBackend(backend, slot.env, slot.shared_by) if slot.env else backend


def run_in_slots(tasks: Sequence[Task], work: Callable[[Task, Slot], Result], slots: list[Slot],
                 poll_s: float = 0.2) -> list[Result]:
    """``work(task, slot)`` for every task, ``len(slots)`` at a time; the finished tasks' results in task order."""
    if len(slots) == 1:
        results = []
        for task in tasks:
            if stop_requested():
                break
            results.append(work(task, slots[0]))
        return results
    free: queue.SimpleQueue[Slot] = queue.SimpleQueue()
    for slot in slots:
        free.put(slot)
    failed = threading.Event()

    def one(task: Task) -> Result | object:
        if failed.is_set() or stop_requested():
            return _SKIPPED
        slot = free.get()  # as many threads as slots: one is always free here
        try:
            return work(task, slot)
        except BaseException:
            failed.set()
            raise
        finally:
            free.put(slot)

    with ThreadPoolExecutor(len(slots), thread_name_prefix="cv-job") as pool:
        futures = [pool.submit(one, task) for task in tasks]
        try:
            while not all(f.done() for f in futures):
                if failed.is_set() or stop_requested():
                    for future in futures:
                        future.cancel()  # not started yet: never starts
                wait(futures, timeout=poll_s)  # short waits: the main thread's signal handlers run in between
        except BaseException:  # Ctrl-C in the runner: stop every stage, then wait for the running ones
            request_stop()
            for future in futures:
                future.cancel()
            raise
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures if not f.cancelled() and f.result() is not _SKIPPED]
