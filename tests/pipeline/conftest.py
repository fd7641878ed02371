"""Fixtures of the pipeline layer: the command line run as a user would, on the tiny model (no server)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cli():
    """Run `python -m sd35ui COMMAND ARGS` as a user would, on the random tiny model; returns the finished process
    (exit code, stdout, stderr as text)."""
    import subprocess
    import sys

    def run(command: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "sd35ui", command, "--model", "tiny-random", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    return run
