"""Benchmark-only helpers for the random full-size model (`sd35ui.models.fullsize`): exact FLOP and parameter
counts, and the 4-bit loaders that time NF4 the way `sd35ui.core.pipeline.load_pipeline` loads it.

Not part of the app: nothing in `sd35ui/` imports this. `bench/bench.py` reports speed against the compute floor
with `transformer_flops()` for the shape actually built.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sd35ui.models.fullsize import (
    CLIP_TOKENS,
    SHAPES,
    T5_TOKENS,
    VAE_SCALE,
    FullSizeShape,
    _building_on,
    clip_g_config,
    clip_l_config,
    t5_config,
    transformer_config,
    vae_config,
)


def load_nf4_transformer(transformer: Any, folder: Path | None = None) -> Any:
    """The same transformer with NF4 weights, loaded the way `load_pipeline` loads SD3.5 in NF4 (save, then
    `from_pretrained` with a bitsandbytes config). Needs CUDA and bitsandbytes; the bf16 model is not freed."""
    from diffusers import BitsAndBytesConfig, SD3Transformer2DModel

    return _reloaded_in_4bit(transformer, SD3Transformer2DModel, BitsAndBytesConfig, "sd35ui-nf4-", folder)


def load_4bit_t5(text_encoder_3: Any, folder: Path | None = None) -> Any:
    """T5 with 4-bit weights, loaded as `load_pipeline` does for --t5 4bit (transformers keeps `wo` unquantized)."""
    from transformers import BitsAndBytesConfig, T5EncoderModel

    return _reloaded_in_4bit(text_encoder_3, T5EncoderModel, BitsAndBytesConfig, "sd35ui-t5-4bit-", folder)


def _reloaded_in_4bit(module: Any, model_class: Any, config_class: Any, prefix: str, folder: Path | None) -> Any:
    """`module` saved to a temporary folder and loaded back by `model_class` with NF4 weights (`config_class` is
    the bitsandbytes config of its library: diffusers' or transformers')."""
    dtype = module.dtype
    with tempfile.TemporaryDirectory(prefix=prefix, dir=folder) as tmp:
        module.save_pretrained(tmp, safe_serialization=True)
        quantized = model_class.from_pretrained(
            tmp,
            quantization_config=config_class(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            ),
            dtype=dtype,
            use_safetensors=True,
        )
    return quantized.eval().requires_grad_(False)


# --- exact counts ------------------------------------------------------------------------------------------------


def text_tokens(max_sequence_length: int = T5_TOKENS) -> int:
    """Tokens of one encoded prompt: CLIP's 77 followed by T5's."""
    return CLIP_TOKENS + max_sequence_length


def transformer_flops(config: Any, height: int, width: int, text_len: int = text_tokens(), batch: int = 1) -> int:
    """FLOPs of one `SD3Transformer2DModel` forward (matrix products and attention; 2 per multiply-add), exactly as
    torch's FlopCounterMode counts them. `config` is the model's config (or `transformer_config()`); `height` and
    `width` are in pixels; `batch` is 2 for one guided step. Norms, activations and the scheduler are not counted:
    they are memory work, under 1% of the FLOPs."""
    cfg = dict(config)
    p = cfg["patch_size"]
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dc = cfg["caption_projection_dim"]
    if dc != d:
        raise ValueError("caption_projection_dim must equal the inner width for joint attention")
    layers, dual = cfg["num_layers"], set(cfg["dual_attention_layers"])
    n = (height // VAE_SCALE // p) * (width // VAE_SCALE // p)  # image tokens
    t = text_len
    per_sample = 2 * (256 * d + d * d) + 2 * (cfg["pooled_projection_dim"] * d + d * d)  # timestep + pooled MLPs
    tokens = 2 * n * cfg["in_channels"] * p * p * d + 2 * t * cfg["joint_attention_dim"] * dc  # patchify, captions
    for i in range(layers):
        pre_only = i == layers - 1
        per_sample += 2 * d * (9 * d if i in dual else 6 * d)  # adaLN of the image stream
        per_sample += 2 * d * (2 * d if pre_only else 6 * d)  # adaLN of the text stream
        tokens += 4 * 2 * n * d * d  # image q, k, v, out
        tokens += (3 if pre_only else 4) * 2 * t * d * d  # text q, k, v (, out)
        tokens += 4 * (n + t) ** 2 * d  # joint attention: QK^T and AV
        tokens += 16 * n * d * d + (0 if pre_only else 16 * t * d * d)  # 4x MLPs
        if i in dual:
            tokens += 4 * 2 * n * d * d + 4 * n * n * d  # the second, image-only attention
    per_sample += 2 * d * 2 * d  # final adaLN
    tokens += 2 * n * d * p * p * cfg["out_channels"]  # unpatchify projection
    return batch * (per_sample + tokens)


def attention_flops(config: Any, height: int, width: int, text_len: int = text_tokens(), batch: int = 1) -> int:
    """The attention (QK^T and AV) part of `transformer_flops`: the rest is matrix products by weights."""
    cfg = dict(config)
    p, d = cfg["patch_size"], cfg["num_attention_heads"] * cfg["attention_head_dim"]
    n = (height // VAE_SCALE // p) * (width // VAE_SCALE // p)
    dual = len(cfg["dual_attention_layers"])
    return batch * (cfg["num_layers"] * 4 * (n + text_len) ** 2 * d + dual * 4 * n * n * d)


def image_flops(config: Any, height: int, width: int, steps: int, guided: bool, text_len: int = text_tokens()) -> int:
    """Transformer FLOPs of one image: `steps` forwards, each on a batch of 2 when guided (classifier-free)."""
    return steps * transformer_flops(config, height, width, text_len, batch=2 if guided else 1)


def parameter_counts(shape: FullSizeShape = SHAPES["full"]) -> dict[str, int]:
    """Exact parameter (and buffer) element counts of each component, from models built on the meta device (no
    memory, no time)."""
    import torch
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    with _building_on("meta", torch.float32):
        models = {
            "transformer": SD3Transformer2DModel(**transformer_config(shape)),
            "vae": AutoencoderKL(**vae_config(shape)),
            "text_encoder": CLIPTextModelWithProjection(CLIPTextConfig(**clip_l_config(shape))),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**clip_g_config(shape))),
            "text_encoder_3": T5EncoderModel(T5Config(**t5_config(shape))),
        }
    counts = {}
    for name, model in models.items():
        counts[name] = sum(p.numel() for p in model.parameters())
        counts[name + "_buffers"] = sum(b.numel() for b in model.buffers())
    return counts


def other_flops(shape: FullSizeShape, height: int, width: int, guided: bool = True, t5_len: int = T5_TOKENS) -> dict:
    """FLOPs of text encoding (prompt and, when guided, negative prompt through CLIP-L, CLIP-G and T5) and of one
    VAE decode, counted by torch's FlopCounterMode on models built on the meta device (no memory, a few seconds)."""
    import torch
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    batch = 2 if guided else 1
    with _building_on("meta", torch.float32):
        vae = AutoencoderKL(**vae_config(shape))
        encoders = [
            (CLIPTextModelWithProjection(CLIPTextConfig(**clip_l_config(shape))), CLIP_TOKENS),
            (CLIPTextModelWithProjection(CLIPTextConfig(**clip_g_config(shape))), CLIP_TOKENS),
            (T5EncoderModel(T5Config(**t5_config(shape))), t5_len),
        ]
    ids = lambda n: torch.zeros(batch, n, dtype=torch.long, device="meta")  # noqa: E731
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        for model, tokens in encoders:
            model(ids(tokens))
    text = counter.get_total_flops()
    latents = torch.zeros(1, 16, height // VAE_SCALE, width // VAE_SCALE, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        vae.decode(latents)
    return {"text_encode": text, "vae_decode": counter.get_total_flops()}
