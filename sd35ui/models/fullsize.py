"""The real SD3.5 Medium architecture with random weights: configs and a fast builder.

The weights of SD3.5 Medium cannot be downloaded on the machines of this project, yet speed and memory must be
measured on its real shapes. `build_pipeline()` builds every component from the real diffusers/transformers classes
at the model's published sizes (transformer 24 layers x 1536 wide, patch 2, 16 latent channels, dual attention in
layers 0-12; CLIP-L, CLIP-G and T5-XXL at full size; the 16-channel VAE), with seeded random weights, directly on
the target device and in the target dtype, so nothing is copied and start-up takes seconds on a GPU.

`FullSizeShape` can shrink the model for CPUs (fewer layers, widths divided by 2 or 4). The benchmarks count the
FLOPs of the shape actually built (`bench/flops.py`), so a ratio measured on a reduced model still means something.

The tokenizers are the hand-built ones of `sd35ui.models.tiny` (nothing comes from the hub); the text models keep their
real vocabulary sizes, so embedding tables have the real size.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FULLSIZE_NAME = "fullsize-random"
FULLSIZE_SEED = 20260601
HEAD_DIM = 64  # transformer and T5 attention heads are 64 wide at every size
CLIP_TOKENS = 77  # CLIP's fixed context
T5_TOKENS = 256  # SD3.5's max_sequence_length for T5: 77 + 256 = 333 text tokens per prompt
CLIP_VOCAB = 49408
T5_VOCAB = 32128
VAE_SCALE = 8  # pixels per latent pixel
ALLOWED_WIDTH_DIVISORS = (1, 2, 4)  # CLIP-G's 20 heads and the VAE's 32 norm groups divide by these only


@dataclass(frozen=True)
class FullSizeShape:
    """How much of SD3.5 Medium to build. The defaults are the real model; see `SHAPES` for reduced ones."""

    layers: int = 24  # transformer blocks; the last one is "context pre-only" as in the real model
    dual_layers: int = 13  # the first this many blocks have the second (image-only) attention
    clip_l_layers: int = 12
    clip_g_layers: int = 32
    t5_layers: int = 24
    vae_layers_per_block: int = 2
    width_divisor: int = 1  # divides every width (transformer heads, text encoders, VAE channels); 1 = real
    pos_embed_max_size: int = 384  # patches per side of the position table (cropped to the image: no compute)

    def __post_init__(self) -> None:
        if self.width_divisor not in ALLOWED_WIDTH_DIVISORS:
            raise ValueError(
                f"width_divisor must be one of {ALLOWED_WIDTH_DIVISORS} (CLIP-G's 20 heads and the VAE's 32 norm "
                f"groups must divide evenly), got {self.width_divisor}."
            )
        if not 1 <= self.layers or not 0 <= self.dual_layers <= self.layers:
            raise ValueError(
                f"Need layers >= 1 and 0 <= dual_layers <= layers, got {self.layers}, {self.dual_layers}."
            )
        for name in ("clip_l_layers", "clip_g_layers", "t5_layers", "vae_layers_per_block"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")

    @property
    def is_full(self) -> bool:
        return self == FullSizeShape()

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


SHAPES: dict[str, FullSizeShape] = {
    "full": FullSizeShape(),
    # Real widths, fewer layers: one block of each of the three kinds (dual attention, plain, context pre-only).
    # The position table covers 1536 px instead of 6144 px: the same numbers for any image up to that size.
    "reduced": FullSizeShape(
        layers=3, dual_layers=1, clip_l_layers=1, clip_g_layers=1, t5_layers=1, pos_embed_max_size=96
    ),
    # As "reduced" with every width divided by 4: for CI on a few CPU cores.
    "mini": FullSizeShape(
        layers=3,
        dual_layers=1,
        clip_l_layers=1,
        clip_g_layers=1,
        t5_layers=1,
        vae_layers_per_block=1,
        width_divisor=4,
        pos_embed_max_size=96,
    ),
}


def shape_named(name: str) -> FullSizeShape:
    if name not in SHAPES:
        raise ValueError(f"Unknown model shape {name!r}: choose one of {', '.join(SHAPES)}.")
    return SHAPES[name]


# --- configs ---------------------------------------------------------------------------------------------------


def transformer_config(shape: FullSizeShape = SHAPES["full"]) -> dict[str, Any]:
    """`SD3Transformer2DModel` arguments: the published SD3.5 Medium config at `shape`'s depth and width."""
    k = shape.width_divisor
    return dict(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=shape.layers,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=24 // k,
        joint_attention_dim=4096 // k,  # = T5's d_model
        caption_projection_dim=1536 // k,
        pooled_projection_dim=(768 + 1280) // k,  # CLIP-L and CLIP-G pooled outputs, concatenated
        pos_embed_max_size=shape.pos_embed_max_size,
        dual_attention_layers=tuple(range(shape.dual_layers)),
        qk_norm="rms_norm",
    )


def vae_config(shape: FullSizeShape = SHAPES["full"]) -> dict[str, Any]:
    """`AutoencoderKL` arguments of SD3's 16-channel VAE."""
    k = shape.width_divisor
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=tuple(c // k for c in (128, 256, 512, 512)),
        layers_per_block=shape.vae_layers_per_block,
        latent_channels=16,
        norm_num_groups=32,
        sample_size=1024,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5305,
        force_upcast=True,
    )


def clip_l_config(shape: FullSizeShape = SHAPES["full"]) -> dict[str, Any]:
    k = shape.width_divisor
    return dict(
        vocab_size=CLIP_VOCAB,
        hidden_size=768 // k,
        intermediate_size=3072 // k,
        projection_dim=768 // k,
        num_hidden_layers=shape.clip_l_layers,
        num_attention_heads=12 // k,
        max_position_embeddings=CLIP_TOKENS,
        hidden_act="quick_gelu",
    )


def clip_g_config(shape: FullSizeShape = SHAPES["full"]) -> dict[str, Any]:
    k = shape.width_divisor
    return dict(
        vocab_size=CLIP_VOCAB,
        hidden_size=1280 // k,
        intermediate_size=5120 // k,
        projection_dim=1280 // k,
        num_hidden_layers=shape.clip_g_layers,
        num_attention_heads=20 // k,
        max_position_embeddings=CLIP_TOKENS,
        hidden_act="gelu",
    )


def t5_config(shape: FullSizeShape = SHAPES["full"]) -> dict[str, Any]:
    """T5 v1.1 XXL's encoder (the `text_encoder_3` of SD3.5)."""
    k = shape.width_divisor
    return dict(
        vocab_size=T5_VOCAB,
        d_model=4096 // k,
        d_kv=HEAD_DIM,
        d_ff=10240 // k,
        num_layers=shape.t5_layers,
        num_heads=64 // k,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        dropout_rate=0.0,
        tie_word_embeddings=False,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )


# --- building ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _building_on(device: Any, dtype: Any) -> Iterator[None]:
    """Create parameters directly on `device` in `dtype` (no CPU copy, no float32 detour)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _resolve(device: Any, dtype: Any) -> tuple[Any, Any]:
    import torch

    device = torch.device(device if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype in (None, "auto"):
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return device, dtype


def build_transformer(
    shape: FullSizeShape = SHAPES["full"], device: Any = "auto", dtype: Any = "auto", seed: int = FULLSIZE_SEED
) -> Any:
    """A random `SD3Transformer2DModel` at `shape`, built on `device` in `dtype`."""
    import torch
    from diffusers import SD3Transformer2DModel

    device, dtype = _resolve(device, dtype)
    torch.manual_seed(seed)
    with _building_on(device, dtype):
        model = SD3Transformer2DModel(**transformer_config(shape))
    # The sin-cos position table is made in float32 whatever the default dtype; cast it with the rest.
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def build_components(
    shape: FullSizeShape = SHAPES["full"],
    device: Any = "auto",
    dtype: Any = "auto",
    seed: int = FULLSIZE_SEED,
    tokenizer_dir: Path | None = None,
) -> dict[str, Any]:
    """All pipeline components at `shape`, with seeded random weights, built on `device` in `dtype`."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from sd35ui.models.tiny import build_clip_tokenizer, build_t5_tokenizer

    device, dtype = _resolve(device, dtype)
    tokenizer_dir = tokenizer_dir or Path(tempfile.mkdtemp(prefix="sd35ui-fullsize-tok-"))
    clip_tokenizer = build_clip_tokenizer(tokenizer_dir, max_length=CLIP_TOKENS)
    t5_tokenizer = build_t5_tokenizer()
    special = dict(
        bos_token_id=clip_tokenizer.bos_token_id,
        eos_token_id=clip_tokenizer.eos_token_id,
        pad_token_id=clip_tokenizer.pad_token_id,
    )
    transformer = build_transformer(shape, device, dtype, seed)
    with _building_on(device, dtype):
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**vae_config(shape))
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(**clip_l_config(shape), **special))
        torch.manual_seed(seed + 3)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip_g_config(shape), **special))
        torch.manual_seed(seed + 4)
        text_encoder_3 = T5EncoderModel(T5Config(**t5_config(shape)))
    models = {
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "text_encoder_3": text_encoder_3,
    }
    for name, model in models.items():
        models[name] = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return {
        "transformer": transformer,
        **models,
        "tokenizer": clip_tokenizer,
        "tokenizer_2": clip_tokenizer,
        "tokenizer_3": t5_tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
    }


def build_pipeline(
    shape: FullSizeShape | str = "full", device: Any = "auto", dtype: Any = "auto", seed: int = FULLSIZE_SEED
) -> Any:
    """A `StableDiffusion3Pipeline` of the random full-size model (or a reduced `shape`), ready on `device`.

    Nothing is saved or downloaded. The pipeline's `name_or_path` is "fullsize-random" (plus the shape name when
    reduced), and `sd35ui_shape` its shape. `sd35ui.core.pipeline.load_pipeline` adds the load options."""
    from diffusers import StableDiffusion3Pipeline

    name = shape if isinstance(shape, str) else next((k for k, v in SHAPES.items() if v == shape), "custom")
    shape = shape_named(shape) if isinstance(shape, str) else shape
    device, dtype = _resolve(device, dtype)
    pipe = StableDiffusion3Pipeline(**build_components(shape, device, dtype, seed))
    pipe.set_progress_bar_config(disable=True)
    model = FULLSIZE_NAME if shape.is_full else f"{FULLSIZE_NAME}-{name}"
    pipe.register_to_config(_name_or_path=model)  # diffusers' own record of where a pipeline came from
    pipe.sd35ui_shape = shape
    pipe.sd35ui_max_sequence_length = T5_TOKENS
    return pipe
