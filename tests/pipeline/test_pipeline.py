"""The loader on the tiny SD3 pipeline (real classes, random weights): safetensors, the same weights on every build,
one token per word, a 4-bit or dropped T5. Its error paths are in tests/unit/test_pipeline_unit.py."""

import hashlib

import torch

from sd35ui.core import pipeline
from sd35ui.core.pipeline import (
    LoadOptions,
    load_pipeline,
)
from sd35ui.models.tiny import TINY_SEED, ensure_tiny_model, tiny_components


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
