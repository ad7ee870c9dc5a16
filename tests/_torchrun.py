"""``torchrun --standalone --nproc_per_node=2 -m mrigan.app.cli ...`` on CPU (gloo) for the DDP
tests: one torch thread per rank, this checkout first on the path, the whole process group
killed (not left running) when it hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def torchrun_cli(args: list[str], *, cwd: Path, timeout: float = 300) -> str:
    """Run the CLI under torchrun with 2 ranks; assert exit 0 and return its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "mrigan.app.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and every rank
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun hung; stderr tail: {stderr[-2000:]}")
    assert proc.returncode == 0, f"stdout tail:\n{stdout[-2000:]}\nstderr tail:\n{stderr[-6000:]}"
    return stdout
