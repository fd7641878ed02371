"""The real SD3.5 Medium architecture with random weights: configs, a fast builder, exact FLOP and size counts.

The weights of SD3.5 Medium cannot be downloaded on the machines of this project, yet speed and memory must be
measured on its real shapes. `build_pipeline()` builds every component from the real diffusers/transformers classes
at the model's published sizes (transformer 24 layers x 1536 wide, patch 2, 16 latent channels, dual attention in
layers 0-12; CLIP-L, CLIP-G and T5-XXL at full size; the 16-channel VAE), with seeded random weights, directly on
the target device and in the target dtype, so nothing is copied and start-up takes seconds on a GPU.

`FullSizeShape` can shrink the model for CPUs (fewer layers, widths divided by 2 or 4). Everything that reports
speed against the compute floor counts FLOPs with `transformer_flops()` for the shape actually built, so a ratio
measured on a reduced model still means something.

The tokenizers are the hand-built ones of `sd35ui.tiny` (nothing comes from the hub); the text models keep their
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

    from sd35ui.tiny import build_clip_tokenizer, build_t5_tokenizer

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

    Nothing is saved or downloaded. The pipeline carries `sd35ui_options` like one from `load_pipeline`, with
    model "fullsize-random" (plus the shape name when reduced), and `sd35ui_shape`."""
    from diffusers import StableDiffusion3Pipeline

    from sd35ui.pipeline import LoadOptions

    name = shape if isinstance(shape, str) else next((k for k, v in SHAPES.items() if v == shape), "custom")
    shape = shape_named(shape) if isinstance(shape, str) else shape
    device, dtype = _resolve(device, dtype)
    pipe = StableDiffusion3Pipeline(**build_components(shape, device, dtype, seed))
    pipe.set_progress_bar_config(disable=True)
    model = FULLSIZE_NAME if shape.is_full else f"{FULLSIZE_NAME}-{name}"
    dtype_name = str(dtype).removeprefix("torch.")
    pipe.sd35ui_options = LoadOptions(
        model=model, quant="none", t5="full", offload="none", dtype=dtype_name, device=str(device), allow_cpu=True
    )
    pipe.sd35ui_shape = shape
    pipe.sd35ui_max_sequence_length = T5_TOKENS
    return pipe


def load_nf4_transformer(transformer: Any, folder: Path | None = None) -> Any:
    """The same transformer with NF4 weights, loaded the way `load_pipeline` loads SD3.5 in NF4 (save, then
    `from_pretrained` with a bitsandbytes config). Needs CUDA and bitsandbytes; the bf16 model is not freed."""
    from diffusers import BitsAndBytesConfig, SD3Transformer2DModel

    dtype = transformer.dtype
    with tempfile.TemporaryDirectory(prefix="sd35ui-nf4-", dir=folder) as tmp:
        transformer.save_pretrained(tmp, safe_serialization=True)
        quantized = SD3Transformer2DModel.from_pretrained(
            tmp,
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            ),
            dtype=dtype,
            use_safetensors=True,
        )
    return quantized.eval().requires_grad_(False)


def load_4bit_t5(text_encoder_3: Any, folder: Path | None = None) -> Any:
    """T5 with 4-bit weights, loaded as `load_pipeline` does for --t5 4bit (transformers keeps `wo` unquantized)."""
    from transformers import BitsAndBytesConfig, T5EncoderModel

    dtype = text_encoder_3.dtype
    with tempfile.TemporaryDirectory(prefix="sd35ui-t5-4bit-", dir=folder) as tmp:
        text_encoder_3.save_pretrained(tmp, safe_serialization=True)
        quantized = T5EncoderModel.from_pretrained(
            tmp,
            quantization_config=BitsAndBytesConfig(
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
