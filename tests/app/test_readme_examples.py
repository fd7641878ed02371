"""The README's remote-use examples, run as written against the live app on the tiny model.

How an example is adapted (the only changes): the app's address `http://127.0.0.1:7860/` becomes the test server's,
and the work is shrunk for the tiny model: the keyword arguments `steps=`, `width=`, `height=` of a Python example,
and the same three values of a curl example's JSON `"data"` list (prompt, negative prompt, steps, guidance, width,
height, seed, randomize seed), become 4, 64 and 64. Everything else, the seed included, runs unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from docs_support import code_blocks, shell_commands
from PIL import Image

from sd35ui.core import metadata

DOCUMENTED_URL = "http://127.0.0.1:7860/"
SMALL = {"steps": 4, "width": 64, "height": 64}
DATA_POSITIONS = {"steps": 2, "width": 4, "height": 5}  # in /generate's positional "data" list

PYTHON_EXAMPLES = [block for block in code_blocks("python") if "gradio_client" in block]
CURL_EXAMPLES = [block for block in code_blocks("bash") if "/gradio_api/call/" in block]


def adapt_python(block: str, url: str) -> str:
    assert DOCUMENTED_URL in block, f"the example should use {DOCUMENTED_URL}"
    block = block.replace(DOCUMENTED_URL, url)
    for name, value in SMALL.items():
        block = re.sub(rf"\b{name}=\d+", f"{name}={value}", block)
    return block


def adapt_curl(block: str, url: str) -> str:
    assert DOCUMENTED_URL in block, f"the example should use {DOCUMENTED_URL}"
    block = block.replace(DOCUMENTED_URL, url)

    def shrink(match: re.Match) -> str:
        payload = json.loads(match.group(1))
        for name, position in DATA_POSITIONS.items():
            payload["data"][position] = SMALL[name]
        return f"-d '{json.dumps(payload)}'"

    return re.sub(r"-d '(\{.*?\})'", shrink, block, flags=re.DOTALL)


def test_the_readme_has_remote_examples():
    assert PYTHON_EXAMPLES, "README shows gradio_client use"
    assert CURL_EXAMPLES, "README (or the deploy section awaiting merge) shows curl use"


@pytest.mark.parametrize("block", PYTHON_EXAMPLES, ids=lambda b: f"python-{len(b)}")
def test_python_example_runs(block, app_server):
    app, _ = app_server
    namespace: dict = {}
    exec(compile(adapt_python(block, app.local_url), "README.md", "exec"), namespace)
    path, seed, info = namespace["path"], namespace["seed"], namespace["info"]
    assert seed == 42 and "64x64" in info
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert metadata.read_png_metadata(image)["settings"].seed == 42


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("block", CURL_EXAMPLES, ids=lambda b: f"curl-{len(b)}")
def test_curl_example_runs(block, app_server):
    app, _ = app_server
    script = adapt_curl(block, app.local_url)
    assert len(shell_commands(script)) >= 2
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    events = dict(re.findall(r"^event: (\w+)\ndata: (.*)$", run.stdout, re.MULTILINE))
    assert "complete" in events, run.stdout
    file, seed, info = json.loads(events["complete"])
    assert seed == 42 and "64x64 · 4 steps" in info
    assert file["url"].startswith(app.local_url) and file["url"].endswith(".png")
