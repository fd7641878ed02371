"""A model folder on disk, on a copy of the tiny model's folder: what a missing part or an unreadable
model_index.json says before anything loads, and that the loader opens only safetensors and runs no code from the
folder. The same folder mistakes through demo.py are in tests/app/test_startup.py."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sd35ui.core.pipeline import LoadOptions, ModelNotFoundError, check_model_folder, load_pipeline


def test_model_folder_checks_follow_model_index_json(model_copy):
    check_model_folder(LoadOptions(model=str(model_copy)))  # complete: no error
    shutil.rmtree(model_copy / "text_encoder_3")
    with pytest.raises(ModelNotFoundError, match="has no text_encoder_3/ folder"):
        check_model_folder(LoadOptions(model=str(model_copy)))
    check_model_folder(LoadOptions(model=str(model_copy), t5="drop"))  # --t5 drop never loads it
    (model_copy / "model_index.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="model_index.json cannot be read"):
        check_model_folder(LoadOptions(model=str(model_copy)))
    with pytest.raises(ModelNotFoundError, match="it is a file, not a folder"):
        check_model_folder(LoadOptions(model=str(model_copy / "model_index.json")))


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
