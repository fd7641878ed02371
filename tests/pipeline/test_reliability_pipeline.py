"""The loader refuses pickles and code from a model folder (the access part of the reliability tests that needs no
server; the rest is in tests/app/test_reliability.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sd35ui.core.pipeline import LoadOptions, load_pipeline


def test_weights_load_only_from_safetensors_and_no_code_from_the_model_folder(model_copy, monkeypatch):
    from safetensors.torch import load_file

    transformer = model_copy / "transformer"
    torch.save(
        load_file(transformer / "diffusion_pytorch_model.safetensors"), transformer / "diffusion_pytorch_model.bin"
    )
    (transformer / "diffusion_pytorch_model.safetensors").unlink()
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a))
    with pytest.raises(OSError, match="diffusion_pytorch_model.safetensors"):
        load_pipeline(LoadOptions(model=str(model_copy), allow_cpu=True))
    assert not unpickled, "a pickle was opened"

    shutil.rmtree(transformer)
    shutil.copytree(model_copy.parent / "model" / "vae", transformer)  # any folder will do: it is never read
    index = json.loads((model_copy / "model_index.json").read_text())
    index["scheduler"] = ["evil", "Evil"]
    (model_copy / "model_index.json").write_text(json.dumps(index))
    marker = model_copy.parent / "code-ran"
    evil = f"open({str(marker)!r}, 'w').close()\nclass Evil:\n    pass\n"
    (model_copy / "scheduler" / "evil.py").write_text(evil)
    (model_copy / "evil.py").write_text(evil)
    with pytest.raises(ValueError, match="custom code"):
        load_pipeline(LoadOptions(model=str(model_copy), allow_cpu=True))
    assert not marker.exists()
