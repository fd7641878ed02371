"""Start-up mistakes, made as a user would make them (`python demo.py` in a subprocess): a port out of range or in
use, an outputs folder that cannot be written, a model folder that is missing, incomplete or damaged, a malformed
--auth. Each stops the app before it serves with one "Error: ..." line that says how to fix it, and no traceback.
The model folder checks without demo.py are in tests/pipeline/test_model_folder.py, the flags' ranges in
tests/unit/test_cli_flags.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "demo.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one "Error: ..." line, after checking there is no traceback and no second error line."""
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


# The port and the outputs folder ------------------------------------------------------------------------------------


def test_port_out_of_range_is_an_argparse_error():
    done = run_demo("--model", "tiny-random", "--port", "99999", timeout=60)
    assert done.returncode == 2
    assert "error: argument --port: must be a whole number from 1 to 65535, got '99999'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_reported_before_loading_the_model():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_demo("--model", "tiny-random", "--port", str(port), timeout=60)
    assert done.returncode == 1
    assert error_line(done) == f"Error: Port {port} is in use: pass --port N or stop the other server"
    assert "Loading" not in done.stderr, "found before the model loads"


@pytest.mark.parametrize("kind", ["under a file", "a file"])
def test_an_outputs_folder_that_cannot_be_written_is_reported(tmp_path, kind):
    # Tests run as root, which ignores permission bits: a path through a regular file fails for root too.
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    outputs = blocker / "sub" if kind == "under a file" else blocker
    done = run_demo("--model", "tiny-random", "--port", str(free_port()), "--outputs", str(outputs), timeout=60)
    assert done.returncode == 1
    reason = "Not a directory" if kind == "under a file" else "it is a file, not a folder"
    assert error_line(done) == f"Error: Cannot write to outputs folder {outputs}: {reason}; pass --outputs DIR"
    assert "Loading" not in done.stderr


# The model folder ---------------------------------------------------------------------------------------------------


def test_a_model_folder_that_does_not_exist_says_so_even_without_a_gpu():
    done = run_demo("--model", "/no/such/folder", "--port", str(free_port()))
    assert done.returncode == 1
    line = error_line(done)
    assert line.startswith("Error: No diffusers pipeline found at '/no/such/folder': the folder does not exist")
    assert "--model tiny" in line and "CUDA" not in done.stderr


def test_a_model_folder_without_its_vae_names_the_missing_folder(model_copy):
    shutil.rmtree(model_copy / "vae")
    done = run_demo("--model", str(model_copy), "--port", str(free_port()))  # no --allow-cpu: checked first
    assert done.returncode == 1
    line = error_line(done)
    assert line.startswith(f"Error: {model_copy} has no vae/ folder; a diffusers SD3 model folder needs ")
    assert "model_index.json, " in line and "transformer/" in line and "text_encoder/" in line
    assert "CUDA" not in done.stderr


def test_a_model_that_cannot_be_found_at_startup_exits_with_a_clear_message():
    done = run_demo("--model", "/nonexistent", "--allow-cpu", "--port", "7999", timeout=180)
    assert done.returncode != 0
    assert "Error: No diffusers pipeline found at '/nonexistent'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_damaged_model_at_startup_exits_with_a_clear_message(model_copy):
    weights = model_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted download
    done = run_demo("--model", str(model_copy), "--allow-cpu", "--port", "7999", timeout=180)
    assert done.returncode != 0
    assert "Error:" in done.stderr and "diffusion_pytorch_model.safetensors" in done.stderr
    assert "Traceback" not in done.stderr


# --auth -------------------------------------------------------------------------------------------------------------


def test_a_malformed_auth_stops_the_app_before_it_starts():
    done = run_demo("--model", "tiny", "--auth", "no-colon-here", "--port", "7999", timeout=60)
    assert done.returncode == 2
    assert "Error: --auth must be of the form user:password" in done.stderr and "Traceback" not in done.stderr
