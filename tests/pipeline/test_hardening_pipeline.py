"""Model folder checks (issue 14, start-up mistakes) on a copy of the tiny model's folder: what a missing part or
an unreadable model_index.json says before anything loads. The same mistakes through demo.py are in
tests/app/test_hardening.py."""

from __future__ import annotations

import shutil

import pytest

from sd35ui.core.pipeline import LoadOptions, ModelNotFoundError, check_model_folder


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
