"""The library's front door (`sd35ui.load`, `generate`, `make_sheet`, `save`): README's example runs as written, and
gives what the app's own code path gives."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from docs_support import ROOT, code_blocks
from PIL import Image

import sd35ui
from sd35ui.core import metadata, sheet
from sd35ui.core.generate import generate
from sd35ui.core.pipeline import model_spec
from sd35ui.core.settings import GenerationSettings

LIBRARY_EXAMPLES = [block for block in code_blocks("python") if "import sd35ui" in block]


def test_importing_sd35ui_loads_nothing_heavy():
    code = "import sys, sd35ui; print(sorted(m for m in ('torch', 'diffusers', 'gradio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("block", LIBRARY_EXAMPLES, ids=lambda b: f"python-{len(b)}")
def test_readme_library_example_runs_as_written(block, tmp_path, monkeypatch):
    assert LIBRARY_EXAMPLES, "README shows the library's front door"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    result, made = namespace["result"], namespace["sheet"]

    saved = metadata.read_png_metadata(str(tmp_path / "circle.png"))
    assert saved["settings"] == result.settings and saved["settings"].seed == 7
    assert saved["version"] == sd35ui.__version__
    assert saved["recipe"] == {
        "model": "tiny",
        "quant": "none",
        "t5": "full",
        "offload": "none",
        "compile": "none",
        "offload_text_encoders": False,
        "dtype": "float32",
        "device": "cpu",
    }
    # the app's path: settings validated for the model, then core.generate
    pipe = namespace["pipe"]
    spec = model_spec("tiny")
    same = generate(pipe, GenerationSettings.validated(spec, prompt=result.settings.prompt, guidance=4.5, seed=7))
    assert np.array_equal(np.asarray(same.image), np.asarray(result.image))

    with Image.open(tmp_path / "sheet.png") as image:
        described = json.loads(image.info[sheet.SHEET_JSON_KEY])
        assert image.size == made.image().size
    assert [c["settings"]["guidance"] for c in described["cells"][:3]] == [1.0, 3.0, 5.0]
    assert {c["settings"]["steps"] for c in described["cells"]} == {2, 5, 10} and len(described["cells"]) == 9


def test_front_door_errors_say_what_is_valid():
    pipe = sd35ui.load("tiny")
    with pytest.raises(ValueError, match="1 to 50"):
        sd35ui.generate(pipe, prompt="a red circle", steps=0)
    with pytest.raises(ValueError, match="TYPE=VALUES"):
        sd35ui.make_sheet(pipe, prompt="a red circle", x="guidance")
