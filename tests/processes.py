"""Helpers for the tests that run the study in child processes (imported as ``processes``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """The child's output, after asserting that it exited with status 0 within ``timeout`` seconds."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def kill_after(proc: subprocess.Popen, folder: Path, pattern: str, count: int, *, timeout: float,
               group: bool = False) -> None:
    """SIGKILL the child (its whole process group when ``group``, e.g. torchrun and its workers) as soon as
    ``count`` files under ``folder`` match ``pattern``; asserts that it was still running then."""
    deadline = time.monotonic() + timeout
    while len(list(folder.glob(pattern))) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the study finished before it could be killed"
    (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
    proc.wait()
