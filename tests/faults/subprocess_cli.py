"""Run ``ser-mtl`` in a child process, optionally under a file-size limit (a full disk, reproducibly)."""

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parent


def ser_mtl(args: list[str], max_file_bytes: int | None = None, timeout: float = 600,
            **popen) -> subprocess.CompletedProcess:
    """``python -m ser_mtl.cli ARGS`` from the repository root, output captured.

    ``max_file_bytes``: RLIMIT_FSIZE of the child, with SIGXFSZ ignored, so that a write past it fails
    with EFBIG exactly as a write to a full disk fails with ENOSPC (same code path: OSError on write).
    """

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**os.environ, "PYTHONPATH": str(FAULTS), "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore",
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "ser_mtl.cli", *args], check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit if max_file_bytes else None, **popen)
