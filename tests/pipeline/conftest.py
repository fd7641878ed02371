"""Fixtures of the pipeline layer: the command line run as a user would, on the tiny model (no server)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cli():
    """Run `python -m sd35ui COMMAND ARGS` as a user would, on the random tiny model; returns the finished process
    (exit code, stdout, stderr as text). `env` adds to (or overrides) this process's environment."""
    import os
    import subprocess
    import sys

    def run(
        command: str, *args: str, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "sd35ui", command, "--model", "tiny-random", *args]
        environ = {**os.environ, **env} if env else None
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environ)

    return run


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests, restored after: on a busy 2-core machine two threads spin-wait on
    each other (4x slower here), and several CPU workers each get one. Use with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
