"""Train the built-in tiny SD3 pipeline on coloured shapes, on the CPU, and save it with `save_pretrained`.

    python -m sd35ui.models.train --out sd35ui/models/tiny-shapes --checkpoints /tmp/sd35ui-train --minutes 45

Three phases, each resumable from `--checkpoints` (`--resume`): 1. the VAE (AutoencoderKL, 16 latent channels,
64 px -> 16 x 16 latents) as a near-plain autoencoder; 1b. the two tiny CLIP text encoders on a generic text task
(recover each word of a sentence from the pooled vector), because a random CLIP pools every caption to nearly the
same vector; 2. the SD3 transformer with SD3's rectified-flow objective on frozen VAE and text encoders. Step
counts fix what is trained, so runs are reproducible (every batch and noise draw is a function of seed and step);
`--minutes` is a safety budget that stops cleanly and saves a checkpoint; once the transformer phase has begun it
also exports what there is.

`python -m sd35ui.models.train --evaluate` prints the adherence table (steps x guidance) of the shipped model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sd35ui.models import shapes

MODEL_NAME = "tiny-shapes"
MAX_SEQUENCE_LENGTH = 32  # T5 tokens, at training and inference: 256 would make training ~3x slower for nothing
CLIP_MAX_LENGTH = 16  # CLIP tokens; a caption is 7 words + start and end
SAVE_DTYPE = "float16"  # halves the shipped size; weights are rounded to it before the phases that depend on them
DEFAULT_STEPS = 10  # measured: adherence is 1.00 from 5-10 steps at guidance 3-4.5 and nothing improves after
BANNER = "built-in tiny demo model trained on coloured shapes; run on a CUDA GPU or pass --model for SD3.5 Medium"
EXAMPLE_PROMPTS = (
    "a red circle on a blue background",
    "a yellow triangle on a black background",
    "a white square on a green background",
    "a blue triangle on a yellow background",
)


@dataclass(frozen=True)
class Recipe:
    """Every number that determines the trained model (with the seed)."""

    seed: int = 0
    vae_steps: int = 700
    vae_batch: int = 32
    vae_lr: float = 2e-3
    clip_steps: int = 400
    clip_batch: int = 128
    clip_lr: float = 2e-3
    steps: int = 3000  # transformer
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    ema: float = 0.997
    caption_dropout: float = 0.1  # share of captions replaced by the empty prompt, so guidance has something to do
    uniform_t: float = 0.2  # share of timesteps drawn uniformly rather than logit-normal
    shift: float = 3.0  # timestep shift, the same as the sampler's (FlowMatchEulerDiscreteScheduler(shift=3))
    layers: int = 6
    heads: int = 4
    head_dim: int = 32


# ----------------------------------------------------------------------------------------------------------------
# Components


def build_components(recipe: Recipe, tokenizer_dir: Path) -> dict[str, Any]:
    """Fresh (untrained, seeded) pipeline components for the shapes model."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    from sd35ui.models.tiny import build_clip_tokenizer, build_t5_tokenizer, text_encoder_configs

    clip_tokenizer = build_clip_tokenizer(tokenizer_dir, shapes.VOCABULARY, max_length=CLIP_MAX_LENGTH)
    t5_tokenizer = build_t5_tokenizer(shapes.VOCABULARY)
    torch.manual_seed(recipe.seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=shapes.IMAGE_SIZE,
        mid_block_add_attention=False,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    clip_config, t5_config = text_encoder_configs(clip_tokenizer, t5_tokenizer, clip_max_length=CLIP_MAX_LENGTH)
    torch.manual_seed(recipe.seed + 1)
    text_encoder = CLIPTextModelWithProjection(clip_config)
    torch.manual_seed(recipe.seed + 2)
    text_encoder_2 = CLIPTextModelWithProjection(clip_config)
    torch.manual_seed(recipe.seed + 3)
    text_encoder_3 = T5EncoderModel(t5_config)
    torch.manual_seed(recipe.seed + 4)
    transformer = SD3Transformer2DModel(
        sample_size=shapes.IMAGE_SIZE // 4,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=recipe.layers,
        attention_head_dim=recipe.head_dim,
        num_attention_heads=recipe.heads,
        joint_attention_dim=64,  # T5 width; CLIP's 32 + 32 is zero-padded to it
        caption_projection_dim=recipe.heads * recipe.head_dim,
        pooled_projection_dim=64,  # the two pooled CLIP vectors, concatenated
        qk_norm="rms_norm",
        pos_embed_max_size=32,  # 32 x 32 patches = 256 px, the largest size the app offers for this model
    )
    zero_init(transformer)
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "text_encoder_3": text_encoder_3.eval(),
        "tokenizer": clip_tokenizer,
        "tokenizer_2": clip_tokenizer,
        "tokenizer_3": t5_tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=recipe.shift),
    }


def zero_init(transformer: Any) -> None:
    """DiT-style: every adaLN modulation and the output projection start at zero, so each block starts as the
    identity and the model's first prediction is zero."""
    import torch
    from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero

    with torch.no_grad():
        for module in transformer.modules():
            if isinstance(module, (AdaLayerNormZero, AdaLayerNormContinuous)):
                module.linear.weight.zero_()
                module.linear.bias.zero_()
        transformer.proj_out.weight.zero_()
        transformer.proj_out.bias.zero_()


def round_to_save_dtype(module: Any) -> None:
    """Round weights to the dtype they are saved in, so later phases see exactly what inference will load."""
    import torch

    dtype = getattr(torch, SAVE_DTYPE)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(dtype).float())


# ----------------------------------------------------------------------------------------------------------------
# Training helpers


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pixels(images: np.ndarray) -> Any:
    """uint8 NHWC images to the VAE's float NCHW in [-1, 1]."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def autocast() -> Any:
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)  # 4-5x faster than float32 on this CPU


class Budget:
    """Wall-clock budget for the whole run; training loops ask it whether to stop."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.deadline = time.monotonic() + minutes * 60
        self.start = time.monotonic()

    def exhausted(self) -> bool:
        return time.monotonic() > self.deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _progress(total: int, start: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, mininterval=5, file=sys.stdout, dynamic_ncols=False)


def train_vae(vae: Any, recipe: Recipe, ckpt: Path, budget: Budget) -> bool:
    """Phase 1: reconstruction (MSE + L1) with a tiny KL term. Returns True when all steps are done."""
    import torch

    state_file = ckpt / "vae.pt"
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    start = _load_checkpoint(state_file, opt=opt, model=vae)
    vae.train()
    bar = _progress(recipe.vae_steps, start, "vae")
    step = start
    for step in range(start, recipe.vae_steps):
        if budget.exhausted():
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe.vae_steps, recipe.vae_lr, 50)
        images, _ = shapes.batch(recipe.seed + 101, step, recipe.vae_batch)
        x = pixels(images)
        generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        with autocast():
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
            y = vae.decode(z).sample.float()
        loss = torch.nn.functional.mse_loss(y, x) + torch.nn.functional.l1_loss(y, x)
        loss = loss + 1e-6 * posterior.kl().float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    else:
        step = recipe.vae_steps
    bar.close()
    _save_checkpoint(state_file, step, opt=opt, model=vae)
    vae.eval()
    return step >= recipe.vae_steps


def calibrate_vae(vae: Any, recipe: Recipe) -> dict[str, float]:
    """Set shift_factor = latent mean and scaling_factor = 1 / latent std (as SD3 does), and report the
    reconstruction PSNR on held-out images."""
    import torch

    images, _ = shapes.batch(recipe.seed + 999, 0, 512)
    x = pixels(images)
    with torch.no_grad():
        posterior = vae.encode(x).latent_dist
        latents = posterior.sample(torch.Generator().manual_seed(recipe.seed))
        recon = vae.decode(posterior.mean).sample.clamp(-1, 1)
    mse = float(((recon - x) / 2).pow(2).mean())
    shift, std = float(latents.mean()), float(latents.std())
    vae.register_to_config(shift_factor=shift, scaling_factor=1.0 / std)
    return {"shift_factor": shift, "scaling_factor": 1.0 / std, "psnr_db": 10 * math.log10(1 / mse)}


def _word_targets(tokenizer: Any, sentences: list[list[str]], words: list[str]) -> tuple[Any, Any]:
    import torch

    ids = tokenizer(
        [" ".join(s) for s in sentences],
        padding="max_length",
        max_length=CLIP_MAX_LENGTH,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    targets = torch.full((len(sentences), CLIP_MAX_LENGTH - 2), len(words), dtype=torch.long)  # "no word" class
    for row, sentence in enumerate(sentences):
        for col, word in enumerate(sentence):
            targets[row, col] = words.index(word)
    return ids, targets


def _text_task_batch(rng: np.random.Generator, count: int) -> list[list[str]]:
    """Half random word sequences (1-8 words), half sentences shaped like captions with random words: a generic
    'say back what you read' task that says nothing about images."""
    words = list(shapes.VOCABULARY)
    out = []
    for i in range(count):
        if i % 2:
            out.append([str(w) for w in rng.choice(words, size=int(rng.integers(1, 9)))])
        else:
            a, b, c = (str(w) for w in rng.choice(words, size=3))
            out.append(["a", a, b, "on", "a", c, "background"])
    return out


def train_clip(encoder: Any, tokenizer: Any, recipe: Recipe, index: int, ckpt: Path, budget: Budget) -> bool:
    """Phase 1b: teach one CLIP to pack the words of a sentence (and their order) into its pooled vector."""
    import torch

    words = list(shapes.VOCABULARY)
    state_file = ckpt / f"clip{index}.pt"
    torch.manual_seed(recipe.seed + 10 + index)
    head = torch.nn.Linear(encoder.config.projection_dim, (CLIP_MAX_LENGTH - 2) * (len(words) + 1))
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.clip_lr, weight_decay=0.0)
    start = _load_checkpoint(state_file, opt=opt, model=encoder, head=head)
    encoder.train()
    bar = _progress(recipe.clip_steps, start, f"clip{index}")
    step = start
    for step in range(start, recipe.clip_steps):
        if budget.exhausted():
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe.clip_steps, recipe.clip_lr, 30)
        sentences = _text_task_batch(np.random.default_rng([recipe.seed + 20 + index, step]), recipe.clip_batch)
        ids, targets = _word_targets(tokenizer, sentences, words)
        pooled = encoder(ids).text_embeds
        logits = head(pooled).view(len(sentences), CLIP_MAX_LENGTH - 2, len(words) + 1)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    else:
        step = recipe.clip_steps
    bar.close()
    _save_checkpoint(state_file, step, opt=opt, model=encoder, head=head)
    encoder.eval()
    return step >= recipe.clip_steps


def encode_prompts(pipe: Any) -> dict[str, Any]:
    """All training prompts and the empty prompt, encoded once, exactly as inference encodes them."""
    import torch

    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=list(shapes.PROMPTS),
            prompt_2=None,
            prompt_3=None,
            do_classifier_free_guidance=False,
            device="cpu",
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
        empty, _, empty_pooled, _ = pipe.encode_prompt(
            prompt="",
            prompt_2=None,
            prompt_3=None,
            do_classifier_free_guidance=False,
            device="cpu",
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
    pooled_cos = torch.nn.functional.cosine_similarity(pooled[:, None], pooled[None, :], dim=-1)
    off_diagonal = pooled_cos[~torch.eye(len(pooled), dtype=torch.bool)]
    return {
        "embeds": embeds,
        "pooled": pooled,
        "empty": empty[0],
        "empty_pooled": empty_pooled[0],
        "max_pooled_cosine": float(off_diagonal.max()),
    }


def sample_timesteps(generator: Any, count: int, recipe: Recipe) -> Any:
    """Logit-normal(0, 1) mixed with uniform, then shifted like the sampler: t' = s t / (1 + (s - 1) t)."""
    import torch

    t = torch.sigmoid(torch.randn(count, generator=generator))
    uniform = torch.rand(count, generator=generator)
    use_uniform = torch.rand(count, generator=generator) < recipe.uniform_t
    t = torch.where(use_uniform, uniform, t)
    return recipe.shift * t / (1 + (recipe.shift - 1) * t)


def train_transformer(
    transformer: Any, ema: Any, vae: Any, text: dict[str, Any], recipe: Recipe, ckpt: Path, budget: Budget
) -> int:
    """Phase 2: SD3's rectified flow. Returns the number of steps done (== recipe.steps when complete)."""
    import torch

    state_file = ckpt / "transformer.pt"
    params = [p for p in transformer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, betas=(0.9, 0.99), weight_decay=0.0)
    start = _load_checkpoint(state_file, opt=opt, model=transformer, ema=ema)
    transformer.train()
    bar = _progress(recipe.steps, start, "transformer")
    losses: list[float] = []
    step = start
    ema_params = list(ema.parameters())
    for step in range(start, recipe.steps):
        if budget.exhausted():
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe.steps, recipe.lr, recipe.warmup)
        xt, embeds, pooled, t, target = _flow_batch(vae, text, recipe, step)
        with autocast():
            pred = transformer(
                hidden_states=xt,
                encoder_hidden_states=embeds,
                pooled_projections=pooled,
                timestep=t * 1000,
                return_dict=False,
            )[0]
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(recipe.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % 500 == 0:
            _save_checkpoint(state_file, step + 1, opt=opt, model=transformer, ema=ema)
    else:
        step = recipe.steps
    bar.close()
    _save_checkpoint(state_file, step, opt=opt, model=transformer, ema=ema)
    transformer.eval()
    return step


def _flow_batch(vae: Any, text: dict[str, Any], recipe: Recipe, step: int) -> tuple[Any, Any, Any, Any, Any]:
    """Training batch `step` of the transformer: (noisy latents x_t, prompt embeddings, pooled embeddings, t in
    [0, 1], target velocity noise - x_0). Images, caption dropout, timesteps and noise all come from `step` and the
    seed, so a resumed run draws exactly what an uninterrupted one would."""
    import torch

    images, indices = shapes.batch(recipe.seed, step, recipe.batch)
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + 500_000 + step)
    with torch.no_grad(), autocast():  # bf16 encoding is ~10x faster than float32 here
        posterior = vae.encode(pixels(images)).latent_dist
    x0 = posterior.mean.float() + posterior.std.float() * torch.randn(posterior.mean.shape, generator=generator)
    x0 = (x0 - vae.config.shift_factor) * vae.config.scaling_factor
    idx = torch.from_numpy(indices)
    embeds, pooled = text["embeds"][idx].clone(), text["pooled"][idx].clone()
    dropped = torch.rand(recipe.batch, generator=generator) < recipe.caption_dropout
    embeds[dropped] = text["empty"]
    pooled[dropped] = text["empty_pooled"]
    t = sample_timesteps(generator, recipe.batch, recipe)
    noise = torch.randn(x0.shape, generator=generator)
    tt = t.view(-1, 1, 1, 1)
    xt = (1 - tt) * x0 + tt * noise
    return xt, embeds, pooled, t, noise - x0


def _load_checkpoint(path: Path, **parts: Any) -> int:
    """Load the state of each named part (model, optimizer, EMA copy, ...) saved by `_save_checkpoint`; return
    the step to go on from (0 when there is no checkpoint yet)."""
    import torch

    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return state["step"]


def _save_checkpoint(path: Path, step: int, **parts: Any) -> None:
    """Save each named part's state and the step, through a temporary file, so that a run killed while saving
    leaves the previous checkpoint whole."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({name: part.state_dict() for name, part in parts.items()} | {"step": step}, tmp)
    tmp.replace(path)


# ----------------------------------------------------------------------------------------------------------------
# Export and evaluation


def export(components: dict[str, Any], ema: Any, out: Path, info: dict[str, Any]) -> None:
    """Save the pipeline (EMA transformer weights) with save_pretrained, plus sd35ui_model.json."""
    import torch
    from diffusers import StableDiffusion3Pipeline

    parts = dict(components, transformer=ema)
    pipe = StableDiffusion3Pipeline(**parts)
    pipe.to(getattr(torch, SAVE_DTYPE))
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out), safe_serialization=True)
    pipe.to(torch.float32)
    (out / "sd35ui_model.json").write_text(json.dumps(info, indent=2) + "\n")


def evaluate(
    steps_list: tuple[int, ...] = (2, 5, 10, 20, 40),
    guidance_list: tuple[float, ...] = (1.0, 3.0, 4.5, 7.0),
    seeds: tuple[int, ...] = (0, 1),
) -> list[dict[str, Any]]:
    """Adherence of the shipped model through the app's own loader and generation service."""
    from sd35ui.core.generate import generate
    from sd35ui.core.pipeline import LoadOptions, get_pipeline
    from sd35ui.core.settings import GenerationSettings
    from sd35ui.models import adherence

    pipe = get_pipeline(LoadOptions(model="tiny"))  # reads max_sequence_length from sd35ui_model.json

    def run(prompt_of: Any, steps: int, guidance: float) -> dict[str, Any]:
        scores, fractions, purities, seconds = [], [], [], []
        for label in adherence.EVAL_LABELS:
            for seed in seeds:
                settings = GenerationSettings(
                    prompt=prompt_of(label), steps=steps, guidance=guidance, width=64, height=64, seed=seed
                )
                result = generate(pipe, settings)
                image = np.asarray(result.image.convert("RGB"))
                scores.append(adherence.score(image, label))
                fractions.append(adherence.colour_fraction(image, label[0]))
                purities.append(adherence.purity(image))
                seconds.append(result.timings["total"])
        row = {"steps": steps, "guidance": guidance, **adherence.mean_scores(scores)}
        means = {"colour_fraction": float(np.mean(fractions)), "purity": float(np.mean(purities))}
        return row | means | {"seconds": float(np.median(seconds))}

    rows = []
    for steps in steps_list:
        for guidance in guidance_list:
            rows.append(run(lambda label: shapes.caption(*label), steps, guidance) | {"prompt": "caption"})
            print(_row_text(rows[-1]), flush=True)
    rows.append(run(lambda label: "", DEFAULT_STEPS, 4.5) | {"prompt": "empty"})
    print(_row_text(rows[-1]), flush=True)
    return rows


def _row_text(row: dict[str, Any]) -> str:
    return (
        f"| {row['prompt']} | {row['steps']} | {row['guidance']:g} | {row['background']:.2f} | {row['colour']:.2f} | "
        f"{row['shape']:.2f} | {row['all']:.2f} | {row['colour_fraction']:.3f} | {row['purity']:.3f} | "
        f"{row['seconds']:.3f} |"
    )


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.evaluate:
        rows = evaluate()
        (args.out / "adherence.json").write_text(json.dumps(rows, indent=1) + "\n")
        return 0

    recipe = Recipe(**{name: getattr(args, name) for name in asdict(Recipe())})
    budget = Budget(args.minutes)
    ckpt = args.checkpoints
    if ckpt.exists() and not args.resume and any(ckpt.iterdir()):
        parser.error(f"{ckpt} holds checkpoints: pass --resume to continue them, or pick an empty folder.")
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    return train_model(recipe, args.out, ckpt, budget)


def _parser() -> argparse.ArgumentParser:
    """The command line: run options, then one option per Recipe field (--vae-steps, --lr, ...)."""
    parser = argparse.ArgumentParser(prog="python -m sd35ui.models.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / MODEL_NAME)
    parser.add_argument("--checkpoints", type=Path, default=Path(tempfile.gettempdir()) / "sd35ui-train")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints (else start afresh)")
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget; stops cleanly and saves")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--evaluate", action="store_true", help="print the adherence table of the shipped model")
    for name, value in asdict(Recipe()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return parser


def train_model(recipe: Recipe, out: Path, ckpt: Path, budget: Budget) -> int:
    """Every phase, from (or on from) the checkpoints in `ckpt`, then the export to `out`. Returns 0 when the
    recipe is done, 1 when the budget ran out first (what there is is exported once the transformer phase runs)."""
    components = build_components(recipe, ckpt / "tokenizer")
    log: dict[str, Any] = {"recipe": asdict(recipe)}
    timings: dict[str, float] = {}
    if not _vae_phase(components["vae"], recipe, ckpt, budget, log, timings):
        print(f"Budget of {budget.minutes} min ran out in the VAE phase; rerun with --resume.")
        return 1
    if not _clip_phase(components, recipe, ckpt, budget, timings):
        print(f"Budget of {budget.minutes} min ran out in the CLIP phase; rerun with --resume.")
        return 1
    text = _encode_captions(components, log)
    ema, done = _transformer_phase(components, text, recipe, ckpt, budget, timings)
    timings["total_s"] = budget.elapsed()
    log |= {"transformer_steps_done": done, "timings_this_run": timings}
    print(json.dumps(log, indent=1), flush=True)

    export(components, ema, out, model_info())
    (ckpt / "train_log.json").write_text(json.dumps(log, indent=1))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"saved {out} ({size / 1e6:.1f} MB); transformer steps {done} of {recipe.steps}", flush=True)
    if done < recipe.steps:
        print(f"Budget of {budget.minutes} min ran out at step {done}; rerun with --resume to finish.")
        return 1
    return 0


def _vae_phase(
    vae: Any, recipe: Recipe, ckpt: Path, budget: Budget, log: dict[str, Any], timings: dict[str, float]
) -> bool:
    """Phase 1: train the VAE, round it to the saved dtype and calibrate its latents. False if the budget ran out."""
    t0 = time.monotonic()
    if not train_vae(vae, recipe, ckpt, budget):
        return False
    round_to_save_dtype(vae)
    log["vae"] = calibrate_vae(vae, recipe)
    timings["vae_s"] = time.monotonic() - t0
    print("vae:", log["vae"], flush=True)
    return True


def _clip_phase(
    components: dict[str, Any], recipe: Recipe, ckpt: Path, budget: Budget, timings: dict[str, float]
) -> bool:
    """Phase 1b: train both CLIPs, round every text encoder to the saved dtype, then freeze them and the VAE.
    False if the budget ran out."""
    t0 = time.monotonic()
    for index, name in ((1, "text_encoder"), (2, "text_encoder_2")):
        if not train_clip(components[name], components["tokenizer"], recipe, index, ckpt, budget):
            return False
        round_to_save_dtype(components[name])
    round_to_save_dtype(components["text_encoder_3"])
    timings["clip_s"] = time.monotonic() - t0
    for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        components[name].requires_grad_(False).eval()
    return True


def _encode_captions(components: dict[str, Any], log: dict[str, Any]) -> dict[str, Any]:
    """Every training caption encoded once by the frozen text encoders (see `encode_prompts`)."""
    from diffusers import StableDiffusion3Pipeline

    text = encode_prompts(StableDiffusion3Pipeline(**components))
    log["max_pooled_cosine_between_captions"] = text["max_pooled_cosine"]
    print(f"pooled CLIP cosine between captions: max {text['max_pooled_cosine']:.4f}", flush=True)
    return text


def _transformer_phase(
    components: dict[str, Any],
    text: dict[str, Any],
    recipe: Recipe,
    ckpt: Path,
    budget: Budget,
    timings: dict[str, float],
) -> tuple[Any, int]:
    """Phase 2: train the transformer with an EMA copy; returns (the EMA copy, the steps done)."""
    from diffusers import SD3Transformer2DModel

    t0 = time.monotonic()
    transformer = components["transformer"]
    ema = SD3Transformer2DModel.from_config(transformer.config)
    ema.load_state_dict(transformer.state_dict())
    ema.requires_grad_(False).eval()
    done = train_transformer(transformer, ema, components["vae"], text, recipe, ckpt, budget)
    timings["transformer_s"] = time.monotonic() - t0
    return ema, done


def model_info() -> dict[str, Any]:
    """What the exported model declares in its sd35ui_model.json (read by `sd35ui.models.tiny.tiny_model_info`)."""
    return {
        "name": MODEL_NAME,
        "default_size": shapes.IMAGE_SIZE,
        "max_size": 256,
        "min_size": 32,
        "max_sequence_length": MAX_SEQUENCE_LENGTH,
        "default_steps": DEFAULT_STEPS,
        "banner": BANNER,
        "example_prompts": list(EXAMPLE_PROMPTS),
        "transformer_layers": Recipe.layers,
        # skip-layer guidance skips a block a third of the way in, as SD3.5 Medium's 7, 8, 9 of 24 (bench/samplers.py)
        "skip_layers": [Recipe.layers // 3],
    }


if __name__ == "__main__":
    sys.exit(main())
