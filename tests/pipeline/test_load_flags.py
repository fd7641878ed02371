"""Each load flag changes what is loaded: parsed by the real CLI parser, loaded by the real loader on the tiny model.

CUDA-only flags (--offload, --offload-text-encoders, NF4 without the lifted check) are shown to reach the loader on
this CPU by the loader refusing them with its message; their effect on a GPU is checked by the `gpu` tests below,
which skip without one. The NF4 test lifts diffusers' "a GPU is needed" environment check (bitsandbytes 0.50
quantizes on the CPU too) to run our real NF4 loading code here.
"""

from __future__ import annotations

import pytest
import torch

from sd35ui import cli
from sd35ui.core import options as load_flags
from sd35ui.core.pipeline import NoCudaError, OptionsError, load_pipeline, recipe
from sd35ui.models.tiny import SHIPPED_DIR

BASE = ["generate", "--prompt", "x", "--out", "x.png"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none on this machine")


def load_with(*flags: str):
    args = cli.build_parser().parse_args(BASE + list(flags))
    return load_pipeline(load_flags.load_options(args))


@pytest.fixture(scope="module")
def plain():
    return load_with("--model", "tiny")


def test_model_flag_picks_the_weights(plain):
    other = load_with("--model", "tiny-random")
    assert recipe(plain)["model"] == "tiny" and recipe(other)["model"] == "tiny-random"
    # the shipped trained model and the random one differ in their weights (and here in width too)
    a, b = plain.transformer.pos_embed.proj.weight, other.transformer.pos_embed.proj.weight
    assert a.shape != b.shape or not torch.equal(a, b)


def test_dtype_flag_sets_the_weights_dtype(plain):
    assert plain.transformer.dtype == torch.float32
    pipe = load_with("--model", "tiny", "--dtype", "bfloat16")
    assert pipe.transformer.dtype == torch.bfloat16 and recipe(pipe)["dtype"] == "bfloat16"


def test_t5_flag_drops_or_quantizes_t5(plain):
    assert type(plain.text_encoder_3).__name__ == "T5EncoderModel"
    assert load_with("--model", "tiny", "--t5", "drop").text_encoder_3 is None
    four_bit = load_with("--model", "tiny", "--t5", "4bit")
    assert getattr(four_bit.text_encoder_3, "is_loaded_in_4bit", False) and recipe(four_bit)["t5"] == "4bit"


def test_quant_flag_loads_an_nf4_transformer(plain, monkeypatch):
    with pytest.raises(NoCudaError, match="NF4"):
        load_with("--model", "tiny", "--quant", "nf4")  # what a CPU user sees
    from diffusers.quantizers.bitsandbytes.bnb_quantizer import BnB4BitDiffusersQuantizer as Quantizer

    monkeypatch.setattr(Quantizer, "validate_environment", lambda self, *a, **k: None)
    monkeypatch.setattr(Quantizer, "update_device_map", lambda self, device_map: device_map or {"": "cpu"})
    monkeypatch.setattr("sd35ui.core.pipeline.nf4_supported", lambda device: True)
    pipe = load_with("--model", "tiny", "--quant", "nf4", "--offload", "none")
    assert pipe.transformer.is_loaded_in_4bit and not getattr(plain.transformer, "is_loaded_in_4bit", False)
    assert "Linear4bit" in {type(m).__name__ for m in pipe.transformer.modules()}
    assert recipe(pipe)["quant"] == "nf4"


def test_compile_flag_compiles_the_transformer(plain):
    assert all(block._compiled_call_impl is None for block in plain.transformer.transformer_blocks)
    regional = load_with("--model", "tiny", "--compile", "regional")  # torch.compile is lazy: nothing runs yet
    assert all(block._compiled_call_impl is not None for block in regional.transformer.transformer_blocks)
    assert recipe(regional)["compile"] == "regional"
    full = load_with("--model", "tiny", "--compile", "full")
    assert full.transformer._compiled_call_impl is not None and recipe(full)["compile"] == "full"


def test_allow_cpu_flag_lets_a_full_model_folder_run_on_the_cpu():
    folder = str(SHIPPED_DIR)  # a model folder, not a built-in name: treated like a downloaded SD3.5
    with pytest.raises(NoCudaError, match="--allow-cpu"):
        load_with("--model", folder)
    assert recipe(load_with("--model", folder, "--allow-cpu"))["device"] == "cpu"


def test_device_flag_chooses_the_device():
    if not torch.cuda.is_available():
        with pytest.raises(NoCudaError, match="CUDA was requested"):
            load_with("--model", "tiny", "--device", "cuda")
    assert load_with("--model", "tiny", "--device", "cpu").transformer.device.type == "cpu"


def test_offload_flags_reach_the_loader():
    if torch.cuda.is_available():
        pytest.skip("on a GPU the offload flags load; see the gpu tests")
    with pytest.raises(NoCudaError, match="offload"):
        load_with("--model", "tiny", "--offload", "model")
    with pytest.raises(OptionsError, match="--offload-text-encoders"):  # was silently ignored before it was wired
        load_with("--model", "tiny", "--offload-text-encoders")


@pytest.mark.gpu
@needs_cuda
def test_offload_flags_move_models_off_the_gpu():
    model = load_with("--model", "tiny", "--offload", "model")
    assert model._all_hooks and recipe(model)["offload"] == "model"
    streamed = load_with("--model", "tiny", "--offload-text-encoders")
    assert streamed.transformer.device.type == "cuda" and hasattr(streamed.text_encoder_3, "_hf_hook")
    assert recipe(streamed)["offload_text_encoders"] is True
