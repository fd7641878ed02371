"""The loader on the tiny SD3 pipeline (real classes, random weights) and its error paths."""

import hashlib

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
    check_options,
    load_pipeline,
)
from sd35ui.models.tiny import TINY_SEED, ensure_tiny_model, tiny_components

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the messages shown without CUDA")


def test_tiny_model_is_saved_as_safetensors_and_loads_back(tiny_pipe, tiny_options):
    folder = ensure_tiny_model()
    files = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert ".safetensors" in files and ".bin" not in files and ".pt" not in files
    assert type(tiny_pipe).__name__ == "StableDiffusion3Pipeline"
    assert tiny_pipe.transformer.config.in_channels == 16 and tiny_pipe.transformer.config.patch_size == 2
    assert tiny_pipe.sd35ui_options.model == "tiny-random"
    assert pipeline.get_pipeline(tiny_options) is tiny_pipe  # loaded once, reused


def test_tiny_weights_are_the_same_on_every_build():
    def digest(components):
        h = hashlib.sha256()
        for name in ("transformer", "vae", "text_encoder", "text_encoder_3"):
            for key, value in sorted(components[name].state_dict().items()):
                h.update(key.encode())
                h.update(value.numpy().tobytes())
        return h.hexdigest()

    assert digest(tiny_components(TINY_SEED)) == digest(tiny_components(TINY_SEED))
    assert digest(tiny_components(TINY_SEED)) != digest(tiny_components(TINY_SEED + 100))


def test_every_tiny_word_is_one_token(tiny_pipe):
    from sd35ui.models.tiny import WORDS

    for word in WORDS:
        assert len(tiny_pipe.tokenizer.tokenize(word)) == 1, word
        assert len(tiny_pipe.tokenizer_3.tokenize(word)) == 1, word
    assert tiny_pipe.tokenizer.tokenize("zqx!")  # unknown text still tokenizes (byte fallback)


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


def test_t5_in_4bit_loads_and_encodes_on_cpu(tiny_pipe):
    pipe = load_pipeline(LoadOptions(model="tiny-random", t5="4bit"))
    assert getattr(pipe.text_encoder_3, "is_loaded_in_4bit", False)
    assert "Linear4bit" in {type(m).__name__ for m in pipe.text_encoder_3.modules()}
    with torch.inference_mode():
        embeds_4bit = pipe.encode_prompt("a red circle", None, None, do_classifier_free_guidance=False)[0]
        embeds_full = tiny_pipe.encode_prompt("a red circle", None, None, do_classifier_free_guidance=False)[0]
    assert embeds_4bit.shape == embeds_full.shape
    t5_part = slice(77, None)  # CLIP tokens first, then T5's
    assert torch.isfinite(embeds_4bit).all()
    cos = torch.nn.functional.cosine_similarity(
        embeds_4bit[0, t5_part].flatten().float(), embeds_full[0, t5_part].flatten().float(), dim=0
    )
    assert cos > 0.9, f"4-bit T5 should approximate the full one, cosine {cos:.3f}"


def test_t5_dropped(tiny_pipe):
    pipe = load_pipeline(LoadOptions(model="tiny-random", t5="drop"))
    assert pipe.text_encoder_3 is None
    from sd35ui.core.generate import generate
    from sd35ui.core.settings import GenerationSettings

    result = generate(pipe, GenerationSettings(prompt="a red circle", steps=2, width=64, height=64, seed=1))
    assert result.image.size == (64, 64)
