"""The built-in tiny models, built locally from the real diffusers and transformers classes.

"tiny" is the trained coloured-shapes model shipped in sd35ui/models/tiny-shapes (trained by
`python -m sd35ui.models.train`); "tiny-random" is an SD3.5-shaped pipeline with random weights (its images are
noise), built here. Nothing comes from the hub. The random model's weights are seeded, so every machine builds the
same model; it is written with `save_pretrained` into a cache folder and then loaded back with `from_pretrained` by
`sd35ui.core.pipeline`, so the real loading path runs. Tests use both; `python demo.py` runs "tiny" on machines
without CUDA.

The tokenizers are built by hand because no tiny SD3 tokenizer can be downloaded here. Both cover every input:
CLIP's byte-level BPE falls back to single bytes, T5's unigram vocabulary to single characters, and each word of
`WORDS` (or of the vocabulary passed in: the trained model uses `shapes.VOCABULARY`) is one token in both.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

TINY_SEED = 20260101
TINY_SIZE = 64  # pixels; the random model's VAE halves it to 32 latent pixels = 16 x 16 patches
TINY_NAME = "tiny-random"
TINY_LAYERS = 2  # transformer blocks of the random model
TINY_SKIP_LAYERS = (1,)  # what skip-layer guidance skips in it: its second, plain block (the first is dual attention)
SHIPPED_DIR = Path(__file__).parent / "tiny-shapes"  # trained by `python -m sd35ui.models.train`; see RECIPE.md
MODEL_INFO = "sd35ui_model.json"  # what a built-in model declares: sizes, T5 length, defaults, banner

# Words that become single tokens; anything else still tokenizes, as pieces.
WORDS = (
    "a an the of on in at with and or to by small large big tiny huge top bottom left right center middle "
    "red green blue yellow white black orange purple pink brown grey gray cyan magenta "
    "circle square triangle star ring cross diamond shape background photo painting drawing of "
    "cat dog fox bird tree forest mountain lake river sea sky cloud sun moon city street house castle "
    "portrait landscape watercolor oil sketch concept art cinematic lighting night day sunset blurry "
    "detailed sharp style colorful dark light bright soft"
).split()


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, which CLIP's byte-level BPE expects."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def _apply_merges(parts: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding as the tokenizer runs it: repeatedly merge the adjacent pair of lowest rank."""
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), len(ranks) + 1), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank > len(ranks):
            break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
    return parts


def write_clip_tokenizer_files(folder: Path, words: tuple[str, ...] | list[str] = tuple(WORDS)) -> None:
    """Write vocab.json and merges.txt (GPT-2 format) for a CLIP BPE tokenizer where each word is one token."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(token, len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(set(words), key=lambda w: (-len(w), w)):
        # Tokenize the word with the merges so far, then join what is left left to right. New merges rank below
        # all earlier ones, so they never change how an earlier word tokenizes.
        parts = _apply_merges(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(parts) > 1:
            ranks.setdefault((parts[0], parts[1]), len(ranks))
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = [parts[0] + parts[1]] + parts[2:]
    merges = [f"{a} {b}" for (a, b), _ in sorted(ranks.items(), key=lambda item: item[1])]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_clip_tokenizer(folder: Path, words: tuple[str, ...] | list[str] = tuple(WORDS), max_length: int = 77) -> Any:
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(folder, words)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=max_length, pad_token="<|endoftext|>")


def build_t5_tokenizer(words: tuple[str, ...] | list[str] = tuple(WORDS), max_length: int = 512) -> Any:
    from transformers import T5TokenizerFast

    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -1.0) for w in sorted(set(words))]
    vocab += [("\u2581", -5.0)] + [(c, -10.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return T5TokenizerFast(vocab=vocab, extra_ids=100, model_max_length=max_length)


def text_encoder_configs(clip_tokenizer: Any, t5_tokenizer: Any, clip_max_length: int = 77) -> tuple[Any, Any]:
    """The tiny text encoders' configs (two CLIPs, hidden 32, pooled 32 + 32 = 64; a T5 of d_model 64), shared by the
    random model and the trained one (sd35ui.models.train)."""
    from transformers import CLIPTextConfig, T5Config

    clip = CLIPTextConfig(
        vocab_size=len(clip_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=clip_max_length,
        bos_token_id=clip_tokenizer.bos_token_id,
        eos_token_id=clip_tokenizer.eos_token_id,
        pad_token_id=clip_tokenizer.pad_token_id,
    )
    t5 = T5Config(
        vocab_size=len(t5_tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return clip, t5


def tiny_components(seed: int = TINY_SEED, tokenizer_dir: Path | None = None) -> dict[str, Any]:
    """The pipeline components of the random tiny model, "tiny-random" (shapes from SD3.5: 16 latent channels,
    patch 2, rms qk-norm, one dual-attention layer). Widths are multiples of 64 where bitsandbytes may run on the
    CPU."""
    import tempfile

    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    transformer = _random_transformer(seed)
    vae = _random_vae(seed + 1)
    tokenizer_dir = tokenizer_dir or Path(tempfile.mkdtemp(prefix="sd35ui-tok-"))
    clip_tokenizer = build_clip_tokenizer(tokenizer_dir)
    t5_tokenizer = build_t5_tokenizer()
    clip_config, t5_config = text_encoder_configs(clip_tokenizer, t5_tokenizer)
    text_encoder = _seeded(seed + 2, CLIPTextModelWithProjection, clip_config)
    text_encoder_2 = _seeded(seed + 3, CLIPTextModelWithProjection, clip_config)
    text_encoder_3 = _seeded(seed + 4, T5EncoderModel, t5_config)
    return {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "text_encoder_2": text_encoder_2.eval(),
        "text_encoder_3": text_encoder_3.eval(),
        "tokenizer": clip_tokenizer,
        "tokenizer_2": clip_tokenizer,
        "tokenizer_3": t5_tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
    }


def _seeded(seed: int, make: Any, *args: Any, **kwargs: Any) -> Any:
    """`make(*args, **kwargs)` with torch's random generator seeded first, so its random weights depend on `seed`."""
    import torch

    torch.manual_seed(seed)
    return make(*args, **kwargs)


def _random_transformer(seed: int) -> Any:
    from diffusers import SD3Transformer2DModel

    return _seeded(
        seed,
        SD3Transformer2DModel,
        sample_size=TINY_SIZE // 2,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=TINY_LAYERS,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=64,
        caption_projection_dim=64,
        pooled_projection_dim=64,
        qk_norm="rms_norm",
        dual_attention_layers=(0,),
        pos_embed_max_size=96,
    )


def _random_vae(seed: int) -> Any:
    from diffusers import AutoencoderKL

    return _seeded(
        seed,
        AutoencoderKL,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        # SD3.5 Medium's VAE has shift_factor 0.0609 and scaling_factor 1.5305 (as in sd35ui.models.fullsize); this
        # 1.5035 has two digits swapped. Kept as it is: with random weights it only rescales noise, and changing it
        # would change every "tiny-random" image and the model already built into users' caches. (The trained
        # "tiny" model has its own factors, calibrated by sd35ui.models.train: see tiny-shapes/vae/config.json.)
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def tiny_model_info(name: str = "tiny") -> dict[str, Any]:
    """What a built-in model declares in its sd35ui_model.json (sizes, T5 length, default steps, banner,
    example prompts); {} for the random model. Reads one small file and builds nothing."""
    folder = shipped_model_path(name)
    info = folder / MODEL_INFO if folder is not None else None
    return json.loads(info.read_text()) if info is not None and info.is_file() else {}


def shipped_model_path(name: str = "tiny") -> Path | None:
    """The folder of the trained model shipped in the package ("tiny"), or None (random model, or not shipped)."""
    if name not in ("tiny", TINY_NAME):
        raise ValueError(f"Unknown built-in model {name!r}: use 'tiny' or '{TINY_NAME}'.")
    if name == "tiny" and (SHIPPED_DIR / "model_index.json").is_file():
        return SHIPPED_DIR
    return None


def tiny_model_path(name: str = "tiny") -> Path:
    """The folder of a built-in tiny model: "tiny" is the trained coloured-shapes model shipped in
    sd35ui/models/tiny-shapes (the random model if that folder is missing); "tiny-random" is built on first use."""
    return shipped_model_path(name) or ensure_tiny_model()


RANDOM_BANNER = (
    "built-in tiny demo model: random weights, images are noise; run on a CUDA GPU or pass --model to use SD3.5 Medium"
)


def tiny_banner(name: str = "tiny") -> str:
    """The line shown in the page and the log while a built-in model runs: what it is and how to get SD3.5."""
    info = Path(tiny_model_path(name), "sd35ui_model.json")
    if info.is_file():
        return str(json.loads(info.read_text()).get("banner", RANDOM_BANNER))
    return RANDOM_BANNER


def default_cache_dir() -> Path:
    base = os.environ.get("SD35UI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sd35ui")
    return Path(base)


def ensure_tiny_model(cache_dir: Path | None = None) -> Path:
    """Build and save the random tiny pipeline once; return its folder (reused when already complete)."""
    import tempfile

    from diffusers import StableDiffusion3Pipeline

    folder = (cache_dir or default_cache_dir()) / f"{TINY_NAME}-{TINY_SEED}"
    if (folder / "model_index.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename, so a crash or a concurrent builder never leaves half a model.
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".building-") as tmp:
        components = tiny_components(tokenizer_dir=Path(tmp) / "tok")
        staged = Path(tmp) / "model"
        StableDiffusion3Pipeline(**components).save_pretrained(str(staged), safe_serialization=True)
        try:
            os.rename(staged, folder)
        except OSError:
            if not (folder / "model_index.json").is_file():  # lost a race only if the winner finished
                raise
    return folder
