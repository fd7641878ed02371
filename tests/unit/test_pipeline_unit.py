"""The loader's error paths that are found before any weights load: options that cannot work, missing CUDA, missing
folders (and local paths told from hub ids), the offline or gated hub, missing packages. Loading itself is tested in
tests/pipeline/test_pipeline.py."""

import pytest
import torch

from sd35ui.core import pipeline
from sd35ui.core.pipeline import (
    GatedModelError,
    LoadOptions,
    MissingDependencyError,
    ModelNotFoundError,
    NoCudaError,
    OptionsError,
    _looks_local,
    check_options,
    load_pipeline,
)

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the messages shown without CUDA")


@no_cuda
def test_nf4_without_cuda_is_refused():
    with pytest.raises(NoCudaError, match="NF4.*needs a CUDA GPU.*--quant none"):
        load_pipeline(LoadOptions(model="tiny-random", quant="nf4", offload="none"))


def test_nf4_with_sequential_offload_is_refused():
    options = LoadOptions(model="tiny-random", quant="nf4", offload="sequential", device="cpu", dtype="float32")
    with pytest.raises(OptionsError, match="sequential CPU offload.*--offload model"):
        check_options(options)


@no_cuda
def test_offload_without_cuda_is_refused():
    with pytest.raises(NoCudaError, match="--offload none"):
        load_pipeline(LoadOptions(model="tiny-random", offload="model"))


@no_cuda
def test_full_model_on_cpu_needs_explicit_flag():
    with pytest.raises(NoCudaError, match="--allow-cpu"):
        load_pipeline(LoadOptions(model="stabilityai/stable-diffusion-3.5-medium"))


def test_missing_local_folder_is_explained(tmp_path):
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_pipeline(LoadOptions(model=str(tmp_path / "nowhere"), allow_cpu=True))


@pytest.mark.parametrize(
    "model, local",
    [
        ("stabilityai/stable-diffusion-3.5-medium", False),
        ("/models/sd35", True),
        ("./sd35", True),
        ("../sd35", True),
        ("~/sd35", True),
        ("models/sd35/medium", True),
        ("sd35", True),
    ],
)
def test_local_paths_are_told_from_hub_ids(model, local):
    assert _looks_local(model) is local


def test_offline_hub_model_is_explained():
    # HF_HUB_OFFLINE=1 in tests: the real hub client refuses, and the loader says what to do.
    with pytest.raises(ModelNotFoundError, match="no network.*--model tiny"):
        load_pipeline(LoadOptions(model="someone/not-cached-model", allow_cpu=True))


def test_gated_repo_error_is_translated():
    import httpx
    from huggingface_hub.errors import GatedRepoError

    url = "https://huggingface.co/stabilityai/stable-diffusion-3.5-medium/resolve/main/model_index.json"
    response = httpx.Response(403, request=httpx.Request("GET", url))
    exc = GatedRepoError("Access to model stabilityai/stable-diffusion-3.5-medium is restricted", response=response)
    translated = pipeline._hub_error(OSError("wrapped"), "m")
    assert translated is None
    wrapped = OSError("could not load")
    wrapped.__cause__ = exc
    translated = pipeline._hub_error(wrapped, "stabilityai/stable-diffusion-3.5-medium")
    assert isinstance(translated, GatedModelError)
    assert "HF_TOKEN" in str(translated) and "huggingface.co/stabilityai/stable-diffusion-3.5-medium" in str(
        translated
    )


def test_missing_dependency_names_the_pip_command():
    with pytest.raises(MissingDependencyError, match="pip install no-such-package"):
        pipeline.require("no_such_package_sd35ui", "no-such-package")


def test_auto_options_on_this_machine():
    resolved = LoadOptions().resolve()
    if not torch.cuda.is_available():
        assert (resolved.model, resolved.device, resolved.quant, resolved.offload) == ("tiny", "cpu", "none", "none")
        assert pipeline.model_banner(LoadOptions()) is not None


def test_auto_dtype_is_bfloat16_on_any_cuda_device():
    from sd35ui.core.pipeline import LoadOptions

    for device in ("cuda", "cuda:1"):
        assert LoadOptions(model="tiny", device=device).resolve().dtype == "bfloat16", device
    assert LoadOptions(model="tiny", device="cpu").resolve().dtype == "float32"
