"""Where the time goes, and how far from the compute floor: one benchmark for sd35ui, on whatever device it runs.

Models: the built-in tiny model (through the app's own loader) and the random full-size SD3.5 Medium
(`sd35ui.models.fullsize`: the real shapes; reduced shapes on a CPU). For each, in one process, so that ratios
compare like with like: load time; seconds per image (new prompt, and prompt from the cache); iterations per second;
the share of text encoding, denoising and VAE decoding; peak memory (CUDA peak allocated and reserved, process RSS
sampled every 20 ms); and the transformer's FLOPs counted analytically for the shapes that ran, against the device's
own measured matrix-multiply rate (the "floor": the time the transformer's FLOPs would take at that rate).

Modes, each measured before it is recommended: eager (bf16 on CUDA, float32 on a CPU; PyTorch SDPA), the attention
kernels, the VAE in channels_last, torch.compile regional and full (compile time, warm-cache compile time, images to
pay back), and on CUDA: text encoders offloaded, NF4 transformer, model and sequential CPU offload, 4-bit T5. Also:
a profile of one transformer forward by kind of work, and a contact sheet against its cells one by one.

    python bench/bench.py --quick --json outputs/bench-quick.json      # CPU, CI: well under a minute
    python bench/bench.py --json outputs/bench-cuda.json               # CUDA: full size, 1024x1024, 40 steps
    python bench/bench.py --shape reduced --size 256 --steps 4         # CPU proof of the GPU run (bench/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import flops as flop_counts  # noqa: E402  (after the path is set)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # a cold compile cache, so "compile_s" is what a first start pays
    _inductor_cache = tempfile.mkdtemp(prefix="sd35ui-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _inductor_cache
    atexit.register(shutil.rmtree, _inductor_cache, ignore_errors=True)

GIB = 2**30
H200_BF16_TFLOPS = 790  # measured on this project's H200s (8192^3 bf16 matmul, random data): the floor
# The order modes run in: what matters most first (a time budget may cut the rest), sequential offload last.
ALL_MODES = (
    "eager",
    "profile",
    "attention",
    "vae_channels_last",
    "compile_regional",
    "fastest",
    "sheet",
    "nf4",
    "nf4_model_offload",
    "model_offload",
    "offload_text_encoders",
    "nf4_offload_text_encoders",
    "nf4_t5_4bit_model_offload",
    "compile_full",
    "sequential_offload",
)
CUDA_ONLY = {
    "attention": "the SDPA kernels other than math run on CUDA only",
    "offload_text_encoders": "streams the text encoders to a GPU; there is none",
    "nf4_offload_text_encoders": "bitsandbytes and streaming need a GPU",
    "nf4": "bitsandbytes refuses to quantize the transformer without a GPU",
    "nf4_model_offload": "bitsandbytes and offload need a GPU",
    "model_offload": "diffusers' CPU offload needs an accelerator",
    "nf4_t5_4bit_model_offload": "bitsandbytes and offload need a GPU",
    "sequential_offload": "diffusers' CPU offload needs an accelerator",
}
QUICK_MODES = ("eager", "profile", "vae_channels_last", "sheet")
TINY_MODES = ("eager", "profile", "vae_channels_last", "sheet")  # the rest say nothing about a 64 px model


# --- measuring ------------------------------------------------------------------------------------------------


class Device:
    """The device under test: synchronisation, memory counters and the matmul rate that defines the floor."""

    def __init__(self, name: str) -> None:
        import torch

        self.torch = torch
        self.type = name
        self.cuda = name == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.name = torch.cuda.get_device_name(0) if self.cuda else cpu_name()
        self.peak_tflops = 0.0

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def allocated_gib(self) -> float | None:
        return self.torch.cuda.memory_allocated() / GIB if self.cuda else None

    def peak_gib(self) -> tuple[float | None, float | None]:
        if not self.cuda:
            return None, None
        return self.torch.cuda.max_memory_allocated() / GIB, self.torch.cuda.max_memory_reserved() / GIB

    def measure_matmul_tflops(self, quick: bool) -> float:
        """The device's dense matmul rate in the model's dtype, measured now (the same load as the run)."""
        torch = self.torch
        n = 8192 if self.cuda else (1024 if quick else 2048)
        reps = 10 if self.cuda else 3
        a = torch.randn(n, n, device=self.type, dtype=self.dtype)
        b = torch.randn(n, n, device=self.type, dtype=self.dtype)
        for _ in range(3 if self.cuda else 1):
            a @ b
        self.sync()
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        self.sync()
        seconds = (time.perf_counter() - start) / reps
        measured = 2 * n**3 / seconds / 1e12
        self.peak_tflops = max(self.peak_tflops, measured)  # the floor uses the best rate seen in the run
        return measured


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class RssSampler:
    """Peak resident memory of this process while a block runs (sampled; the kernel's own peak never resets)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def peak_gib(self) -> float:
        return self.peak / GIB


@dataclass
class Plan:
    """What to run for one model."""

    model: str  # "tiny-random" or the full-size model's name
    size: int
    steps: int
    guidance: float
    images: int  # timed images per mode (after one warm-up)
    slow_steps: int  # steps for sequential offload, which streams the whole transformer every pass


def settings_for(plan: Plan, index: int, steps: int | None = None) -> Any:
    from sd35ui.core.settings import GenerationSettings

    return GenerationSettings(
        prompt=f"a watercolor fox in a forest at sunset, study number {index}",  # a new prompt: encoding counts
        negative_prompt="blurry",
        steps=steps or plan.steps,
        guidance=plan.guidance,
        width=plan.size,
        height=plan.size,
        seed=1000 + index,
    )


def one_image(pipe: Any, settings: Any, device: Device) -> dict[str, Any]:
    """Encode, denoise and decode one image through the app's service functions, timing each phase."""
    import torch

    from sd35ui.core import generate

    guided = generate.is_guided(settings.guidance)
    t0 = time.perf_counter()
    embeddings = generate.encode(pipe, settings.prompt, settings.negative_prompt, guided)
    device.sync()
    t1 = time.perf_counter()
    latents = generate.denoise(pipe, embeddings, settings)
    device.sync()
    t2 = time.perf_counter()
    image = generate.decode(pipe, latents)[0]
    t3 = time.perf_counter()
    return {
        "encode": t1 - t0,
        "denoise": t2 - t1,
        "decode": t3 - t2,
        "finite": bool(torch.isfinite(latents).all()),
        "text_tokens": int(embeddings.prompt.shape[1]),
        "image": image,
    }


def time_images(
    pipe: Any, plan: Plan, device: Device, steps: int | None = None, between: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """One warm-up image (timed on its own: it holds compilation and first-call costs), then `plan.images` timed
    ones, each with a new prompt. Medians of the timed images; memory peaks over all of them.

    With `between`, each timed image is paired with a reference image made right before it: `between("reference")`
    and `between("measured")` switch the pipeline. On a shared machine the load then hits both alike, and the
    reference's medians come back as "reference"."""
    steps = steps or plan.steps
    device.reset_peak()
    runs: list[dict[str, Any]] = []
    reference: list[dict[str, Any]] = []
    with RssSampler() as rss:
        first = one_image(pipe, settings_for(plan, 0, steps), device)
        for i in range(plan.images):
            if between is not None:
                between("reference")
                reference.append(one_image(pipe, settings_for(plan, i + 1, steps), device))
                between("measured")
            runs.append(one_image(pipe, settings_for(plan, i + 1, steps), device))
    peak_alloc, peak_reserved = device.peak_gib()
    timing = {
        **summarize(runs, steps),
        "images": plan.images,
        "first_image_s": first["encode"] + first["denoise"] + first["decode"],
        "peak_alloc_gib": peak_alloc,
        "peak_reserved_gib": peak_reserved,
        "peak_rss_gib": rss.peak_gib,
        "finite": all(r["finite"] for r in runs + reference + [first]),
        "text_tokens": first["text_tokens"],
        "last_image": runs[-1]["image"] if runs else first["image"],
    }
    if reference:
        timing["reference"] = summarize(reference, steps)
    return timing


def summarize(runs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    phase = {k: statistics.median(r[k] for r in runs) for k in ("encode", "denoise", "decode")}
    per_image = sum(phase.values())
    return {
        "steps": steps,
        "s_per_image": per_image,
        "s_per_image_cached": phase["denoise"] + phase["decode"],
        "it_per_s": steps / phase["denoise"],
        "encode_s": phase["encode"],
        "denoise_s": phase["denoise"],
        "decode_s": phase["decode"],
        "share": {k: v / per_image for k, v in phase.items()},
    }


def floor_fields(pipe: Any, plan: Plan, device: Device, timing: dict[str, Any]) -> dict[str, Any]:
    """FLOPs of the image and how its time compares with the floor at the device's measured matmul rate."""
    from sd35ui.core import generate

    config = pipe.transformer.config
    guided = generate.is_guided(plan.guidance)
    flops = flop_counts.image_flops(config, plan.size, plan.size, timing["steps"], guided, timing["text_tokens"])
    return {"flops_per_image": flops, **floor_ratios(flops, timing, device.peak_tflops, device.cuda)}


def floor_ratios(flops: int, timing: dict[str, Any], peak_tflops: float, cuda: bool) -> dict[str, Any]:
    floor = flops / (peak_tflops * 1e12)
    fields = {
        "floor_s": floor,
        "x_floor": timing["s_per_image_cached"] / floor,  # 1.0 = every FLOP at the device's matmul rate
        "x_floor_denoise": timing["denoise_s"] / floor,
        "floor_fraction": floor / timing["s_per_image_cached"],
        "achieved_tflops": flops / timing["denoise_s"] / 1e12,
    }
    if cuda:
        fields["x_floor_790"] = timing["s_per_image_cached"] / (flops / (H200_BF16_TFLOPS * 1e12))
    return fields


def transformer_inputs(pipe: Any, plan: Plan, device: Device, text_len: int) -> dict[str, Any]:
    """Random inputs of one guided step (batch 2) for the transformer alone."""
    import torch

    from sd35ui.core import generate

    cfg = pipe.transformer.config
    batch = 2 if generate.is_guided(plan.guidance) else 1
    latent = plan.size // 8
    g = torch.Generator("cpu").manual_seed(0)
    dtype = pipe.transformer.dtype
    make = lambda *shape: torch.randn(*shape, generator=g).to(device.type, dtype)  # noqa: E731
    return {
        "hidden_states": make(batch, cfg.in_channels, latent, latent),
        "encoder_hidden_states": make(batch, text_len, cfg.joint_attention_dim),
        "pooled_projections": make(batch, cfg.pooled_projection_dim),
        "timestep": torch.full((batch,), 500.0, device=device.type),  # float32, as the scheduler gives it
        "return_dict": False,
    }


def time_forward(transformer: Any, inputs: dict[str, Any], device: Device, reps: int) -> float:
    import torch

    with torch.inference_mode():
        transformer(**inputs)
        device.sync()
        start = time.perf_counter()
        for _ in range(reps):
            transformer(**inputs)
        device.sync()
    return (time.perf_counter() - start) / reps


OP_KINDS = (
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention", "fmha")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_mm", "convolution")),
    ("norm", ("layer_norm", "rms_norm", "group_norm", "batch_norm")),
)


def profile_forward(pipe: Any, plan: Plan, device: Device, text_len: int) -> dict[str, Any]:
    """One transformer forward under torch.profiler: busy time by kind of work (self time of each aten op, device
    time on CUDA), the idle gap to wall time (launch overhead), and TFLOP/s of attention and of the rest."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    transformer = pipe.transformer
    inputs = transformer_inputs(pipe, plan, device, text_len)
    wall = time_forward(transformer, inputs, device, reps=3 if device.cuda else 1)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.cuda else [])
    with torch.inference_mode(), profile(activities=activities) as prof:
        transformer(**inputs)
        device.sync()
    busy = {"attention": 0.0, "matmul": 0.0, "norm": 0.0, "other": 0.0}
    for event in prof.key_averages():
        us = event.self_device_time_total if device.cuda else event.self_cpu_time_total
        kind = next((k for k, keys in OP_KINDS if any(key in event.key for key in keys)), "other")
        busy[kind] += us / 1e6
    total_busy = sum(busy.values())
    batch = inputs["hidden_states"].shape[0]
    flops = flop_counts.transformer_flops(transformer.config, plan.size, plan.size, text_len, batch)
    attention = flop_counts.attention_flops(transformer.config, plan.size, plan.size, text_len, batch)
    result = {
        "forward_s": wall,
        "busy_s": busy,
        "share_of_busy": {k: v / total_busy for k, v in busy.items()} if total_busy else {},
        "flops": flops,
        "attention_flops": attention,
        "forward_tflops": flops / wall / 1e12,
    }
    if busy["attention"]:
        result["attention_tflops"] = attention / busy["attention"] / 1e12
    if busy["matmul"]:
        result["matmul_tflops"] = (flops - attention) / busy["matmul"] / 1e12
    if device.cuda:
        result["idle_share"] = max(0.0, 1 - total_busy / wall)  # GPU waiting for Python: what compile removes
    return result


def compare_attention_kernels(pipe: Any, plan: Plan, device: Device, text_len: int) -> dict[str, Any]:
    """One transformer forward with each SDPA kernel forced (no fallback); the default is PyTorch's choice."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    inputs = transformer_inputs(pipe, plan, device, text_len)
    kernels = {
        "default": None,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    out: dict[str, Any] = {}
    for name, backend in kernels.items():
        try:
            with sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext():
                out[name] = time_forward(pipe.transformer, inputs, device, reps=5)
        except RuntimeError as exc:  # the kernel cannot run this shape or dtype here
            out[name] = f"unavailable: {str(exc).splitlines()[0][:160]}"
    timed = {k: v for k, v in out.items() if isinstance(v, float)}
    best = min(timed, key=timed.get)
    return {"forward_s": out, "best": best, "speedup_vs_default": timed["default"] / timed[best]}


def compare_vae_layout(pipe: Any, plan: Plan, device: Device) -> dict[str, Any]:
    """Decode the same latents with the VAE contiguous and channels_last, interleaved; medians."""
    import torch

    from sd35ui.core import generate, speed

    latent = plan.size // 8
    g = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn(1, 16, latent, latent, generator=g).to(device.type, pipe.transformer.dtype)
    reps = 3 if device.cuda else 2
    times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
    peaks: dict[str, float | None] = {}
    images = {}
    generate.decode(pipe, latents)  # warm-up
    try:
        for _ in range(reps):
            for layout in times:
                speed.set_vae_channels_last(pipe, layout == "channels_last")
                device.reset_peak()
                start = time.perf_counter()
                images[layout] = generate.decode(pipe, latents)[0]
                device.sync()
                times[layout].append(time.perf_counter() - start)
                peaks[layout] = device.peak_gib()[0]
    finally:
        speed.set_vae_channels_last(pipe, False)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "decode_s": median,
        "speedup": median["contiguous"] / median["channels_last"],
        "peak_alloc_gib": peaks,
        "max_pixel_difference": max_pixel_difference(images["contiguous"], images["channels_last"]),
    }


def max_pixel_difference(a: Any, b: Any) -> int:
    import numpy as np

    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def uncompile(module: Any) -> None:
    """Undo `nn.Module.compile` on a module and its children (it stores the compiled call in this attribute)."""
    import torch

    for m in module.modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            m._compiled_call_impl = None
    torch._dynamo.reset()


def compile_mode(
    pipe: Any, plan: Plan, device: Device, mode: str, eager: dict[str, Any], attention: str = "default"
) -> dict[str, Any]:
    """Images with the transformer compiled (`mode`), each paired with an uncompiled one made just before it (the
    same attention kernel); the compile time (cold, then with inductor's on-disk cache warm, as on a second start),
    measured on one transformer forward; and after how many images the compile has paid for itself."""
    from sd35ui.core import speed

    transformer = pipe.transformer
    forward = transformer.forward
    compiled: dict[Any, Any] = {}

    def switch(which: str) -> None:
        if not compiled:  # after the warm-up image: remember what compiling made, to switch it off and on
            compiled.update({m: m._compiled_call_impl for m in transformer.modules() if m._compiled_call_impl})
        for module, fn in compiled.items():
            module._compiled_call_impl = fn if which == "measured" else None

    inputs = transformer_inputs(pipe, plan, device, eager["text_tokens"])  # the shapes of one guided step
    try:
        if attention != "default":
            speed.use_attention_kernel(transformer, attention)
        speed.compile_transformer(transformer, mode)
        compile_s = compile_seconds(transformer, inputs, device)
        timing = time_images(pipe, plan, device, between=switch)
        uncompile(transformer)
        speed.compile_transformer(transformer, mode)
        warm_compile_s = compile_seconds(transformer, inputs, device)
    finally:
        uncompile(transformer)
        transformer.forward = forward
    paired = timing["reference"]
    gain = paired["s_per_image"] - timing["s_per_image"]
    timing.update(
        compile_s=compile_s,
        warm_cache_compile_s=warm_compile_s,
        speedup_paired=paired["s_per_image_cached"] / timing["s_per_image_cached"],
        payback_images=compile_s / gain if gain > 0 else None,
        max_pixel_difference_vs_eager=max_pixel_difference(timing["last_image"], eager["last_image"]),
    )
    return timing


def compile_seconds(transformer: Any, inputs: dict[str, Any], device: Device) -> float:
    """What compiling adds to the first forward: its time minus that of a forward once compiled."""
    import torch

    with torch.inference_mode():
        start = time.perf_counter()
        transformer(**inputs)
        device.sync()
        first = time.perf_counter() - start
    return first - time_forward(transformer, inputs, device, reps=2)


@contextlib.contextmanager
def parked(*modules: Any) -> Iterator[None]:
    """Move modules to CPU memory for the block (so they do not count in a mode's GPU peak), then back."""
    places = [(m, m.device) for m in modules if m is not None]
    for m, _ in places:
        m.to("cpu")
    gc.collect()
    try:
        yield
    finally:
        for m, place in places:
            m.to(place)


def pipeline_with(pipe: Any, **changes: Any) -> Any:
    """A new pipeline object over the same components, with some replaced (e.g. an NF4 transformer)."""
    from diffusers import StableDiffusion3Pipeline

    components = {**pipe.components, **changes}
    new = StableDiffusion3Pipeline(**components)
    new.set_progress_bar_config(disable=True)
    for attr in ("sd35ui_options", "sd35ui_max_sequence_length"):
        if hasattr(pipe, attr):
            setattr(new, attr, getattr(pipe, attr))
    return new


def sheet_vs_cells(pipe: Any, plan: Plan, device: Device) -> dict[str, Any]:
    """A 2 x 2 contact sheet (Guidance across, Steps down) against its cells made one by one with `generate`, prompt
    cache cleared before each (what clicking Generate four times costs); and the sheet with batching."""
    import importlib.util

    if importlib.util.find_spec("sd35ui.core.sheet") is None:
        return {"skipped": "sd35ui/sheet.py is not in this checkout"}
    from sd35ui.core import generate, sheet
    from sd35ui.core.settings import ModelSpec

    spec_model = ModelSpec("bench", default_size=plan.size, max_size=max(plan.size, 1440), min_size=16)
    base = settings_for(plan, 500)
    half = max(1, plan.steps // 2)
    steps = f"{half}, {plan.steps}" if half != plan.steps else f"{plan.steps}"
    spec = sheet.make_spec(base, "Guidance", "3, 4.5", "Steps", steps, model=spec_model)
    cells = sheet.plan_sheet(spec)
    out: dict[str, Any] = {"cells": len(cells), "size": plan.size, "y_steps": steps}

    def singles() -> list[Any]:
        images = []
        for cell in cells:
            generate.prompt_cache.clear()
            images.append(generate.generate(pipe, cell.settings).image)
            device.sync()
        return images

    def run(batch: bool) -> list[Any]:
        result = sheet.run_sheet(pipe, spec, batch=batch, cache=generate.PromptCache())
        device.sync()
        return [done.image for done in sorted(result.cells, key=lambda d: d.cell.index)]

    images = {}
    for name, fn in (
        ("cells_one_by_one", singles),
        ("sheet", lambda: run(False)),
        ("sheet_batched", lambda: run(True)),
    ):
        device.reset_peak()
        start = time.perf_counter()
        images[name] = fn()
        out[f"{name}_s"] = time.perf_counter() - start
        out[f"{name}_peak_alloc_gib"] = device.peak_gib()[0]
    out["speedup_sheet_vs_cells"] = out["cells_one_by_one_s"] / out["sheet_s"]
    out["speedup_batched_vs_cells"] = out["cells_one_by_one_s"] / out["sheet_batched_s"]
    out["sheet_identical_to_cells"] = all(
        max_pixel_difference(a, b) == 0 for a, b in zip(images["cells_one_by_one"], images["sheet"])
    )
    out["batched_max_pixel_difference"] = max(
        max_pixel_difference(a, b) for a, b in zip(images["cells_one_by_one"], images["sheet_batched"])
    )
    return out


# --- the run ----------------------------------------------------------------------------------------------------


class Report:
    def __init__(self, meta: dict[str, Any], path: Path | None) -> None:
        self.data: dict[str, Any] = {"meta": meta, "results": [], "extras": {}, "skipped": [], "errors": []}
        self.path = path

    def add(self, row: dict[str, Any]) -> None:
        row = {k: v for k, v in row.items() if k != "last_image"}
        self.data["results"].append(row)
        self.save()
        print(format_row(row), flush=True)

    def extra(self, model: str, name: str, value: dict[str, Any]) -> None:
        self.data["extras"].setdefault(model, {})[name] = value
        self.save()
        print(f"  {model} {name}: {json.dumps(round_floats(value), default=str)}", flush=True)

    def skip(self, model: str, mode: str, why: str) -> None:
        self.data["skipped"].append({"model": model, "mode": mode, "why": why})
        self.save()

    def error(self, model: str, mode: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.data["errors"].append({"model": model, "mode": mode, "error": text})
        self.save()
        print(f"  {model} {mode}: FAILED: {text}", file=sys.stderr, flush=True)
        traceback.print_exc()

    def save(self) -> None:
        """Written after every result, so a run cut short (a device time limit) keeps what it measured."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(round_floats(self.data), indent=1, default=str))
            tmp.replace(self.path)


def round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v) for v in value]
    return value


COLUMNS = (
    ("model", "model", 24, "s"),
    ("mode", "mode", 26, "s"),
    ("size", "size", 5, "d"),
    ("steps", "steps", 5, "d"),
    ("load_s", "load s", 7, ".2f"),
    ("s_per_image", "s/img", 8, ".3f"),
    ("s_per_image_cached", "cached", 8, ".3f"),
    ("it_per_s", "it/s", 7, ".2f"),
    ("enc", "enc%", 5, ".0f"),
    ("den", "den%", 5, ".0f"),
    ("dec", "dec%", 5, ".0f"),
    ("peak_alloc_gib", "GPU GiB", 8, ".2f"),
    ("peak_rss_gib", "RSS GiB", 8, ".2f"),
    ("x_floor", "x floor", 8, ".2f"),
    ("speedup", "vs eager", 8, ".2f"),
)


def format_row(row: dict[str, Any] | None = None) -> str:
    cells = []
    for key, title, width, fmt in COLUMNS:
        if row is None:
            cells.append(f"{title:>{width}}" if fmt != "s" else f"{title:<{width}}")
            continue
        value = row.get(key)
        if key in ("enc", "den", "dec"):
            name = {"enc": "encode", "den": "denoise", "dec": "decode"}[key]
            value = 100 * row["share"][name] if "share" in row else None
        if key == "speedup":  # paired with uncompiled images where measured so (compile modes)
            value = row.get("speedup_paired", row.get("speedup_vs_eager"))
        if value is None:
            cells.append(f"{'-':>{width}}")
        elif fmt == "s":
            cells.append(f"{str(value)[:width]:<{width}}")
        else:
            cells.append(f"{value:>{width}{fmt}}")
    return " ".join(cells)


def guarded(report: Report, model: str, mode: str) -> Callable[[Callable[[], Any]], Any]:
    """Run one mode; a failure is recorded in the report (and printed) and the run goes on with the next mode."""

    def run(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one broken mode must not lose the other measurements
            report.error(model, mode, exc)
            return None

    return run


class ModeRunner:
    """Runs the modes of one model in a fixed order (each finds the pipeline as loaded), within a time budget."""

    def __init__(
        self, pipe: Any, load_s: float, plan: Plan, device: Device, report: Report, deadline: float | None
    ) -> None:
        self.pipe, self.plan, self.device, self.report, self.deadline = pipe, plan, device, report, deadline
        self.base = {
            "model": plan.model,
            "size": plan.size,
            "guidance": plan.guidance,
            "dtype": str(pipe.transformer.dtype),
            "device": device.type,
            "load_s": load_s,
            "resident_gib_after_load": device.allocated_gib(),
        }
        self.baseline: dict[str, Any] | None = None
        self.best_attention = "default"
        self.vae_wins = False
        self._nf4: Any = None
        self.nf4_load_s: float | None = None

    @property
    def encoders(self) -> list[Any]:
        return [self.pipe.text_encoder, self.pipe.text_encoder_2, self.pipe.text_encoder_3]

    def row(self, mode: str, timing: dict[str, Any], **more: Any) -> None:
        fields = {**self.base, "mode": mode, **timing, **floor_fields(self.pipe, self.plan, self.device, timing)}
        if self.baseline is not None and mode != "eager":
            fields["speedup_vs_eager"] = self.baseline["s_per_image_cached"] / timing["s_per_image_cached"]
            fields.pop("load_s", None)
        self.report.add({**fields, **more})

    def run(self, modes: list[str]) -> None:
        name = self.plan.model
        for mode in ALL_MODES:
            if mode not in modes:
                continue
            if mode in CUDA_ONLY and not self.device.cuda:
                self.report.skip(name, mode, CUDA_ONLY[mode])
                continue
            if mode != "eager" and self.baseline is None:
                self.report.skip(name, mode, "the eager run failed")
                continue
            if mode != "eager" and self.deadline is not None and time.perf_counter() > self.deadline:
                self.report.skip(name, mode, "out of the --budget-s time")
                continue
            try:
                getattr(self, mode)()
            except Exception as exc:  # noqa: BLE001 - one broken mode must not lose the other measurements
                self.report.error(name, mode, exc)

    # One method per mode, in ORDER's order.

    def eager(self) -> None:
        self.baseline = time_images(self.pipe, self.plan, self.device)
        self.row("eager", self.baseline, notes="PyTorch SDPA with its default kernel; all models resident")

    @property
    def text_len(self) -> int:
        assert self.baseline is not None
        return self.baseline["text_tokens"]

    def profile(self) -> None:
        result = profile_forward(self.pipe, self.plan, self.device, self.text_len)
        shape = getattr(self.pipe, "sd35ui_shape", None)
        if shape is not None:  # the full-size architecture: FLOPs of every part of one image, for the shares
            from sd35ui.core import generate

            size, guided = self.plan.size, generate.is_guided(self.plan.guidance)
            parts = flop_counts.other_flops(shape, size, size, guided)
            parts["transformer"] = flop_counts.image_flops(
                self.pipe.transformer.config, size, size, self.plan.steps, guided, self.text_len
            )
            total = sum(parts.values())
            result["image_flops_by_part"] = parts
            result["image_flop_shares"] = {k: v / total for k, v in parts.items()}
        self.report.extra(self.plan.model, "profile", result)

    def attention(self) -> None:
        result = compare_attention_kernels(self.pipe, self.plan, self.device, self.text_len)
        self.report.extra(self.plan.model, "attention_kernels", result)
        self.best_attention = result["best"]

    def vae_channels_last(self) -> None:
        result = compare_vae_layout(self.pipe, self.plan, self.device)
        self.report.extra(self.plan.model, "vae_layout", result)
        self.vae_wins = result["speedup"] > 1.02

    def compile_regional(self) -> None:
        self.row("compile_regional", compile_mode(self.pipe, self.plan, self.device, "regional", self.baseline))

    def fastest(self) -> None:
        from sd35ui.core import speed

        if self.vae_wins:
            speed.set_vae_channels_last(self.pipe, True)
        try:
            timing = compile_mode(self.pipe, self.plan, self.device, "regional", self.baseline, self.best_attention)
        finally:
            speed.set_vae_channels_last(self.pipe, False)
        notes = f"regional compile, attention {self.best_attention}, VAE channels_last {self.vae_wins}"
        self.row("fastest", timing, notes=notes)

    def sheet(self) -> None:
        self.report.extra(self.plan.model, "sheet", sheet_vs_cells(self.pipe, self.plan, self.device))

    def nf4_transformer(self) -> Any:

        if self._nf4 is None:
            start = time.perf_counter()
            self._nf4 = flop_counts.load_nf4_transformer(self.pipe.transformer)
            self.device.sync()
            self.nf4_load_s = time.perf_counter() - start
        return self._nf4

    def nf4(self) -> None:
        nf4 = self.nf4_transformer()
        with parked(self.pipe.transformer):
            p = pipeline_with(self.pipe, transformer=nf4)
            timing = time_images(p, self.plan, self.device)
            self.row("nf4", timing, nf4_load_s=self.nf4_load_s, notes="NF4 transformer (bf16 compute); rest bf16")

    def offloaded(self, p: Any, steps: int | None = None, sequential: bool = False) -> dict[str, Any]:
        """Images with diffusers' CPU offload on `p`; afterwards the models `p` shares with the base pipeline are back
        on the device (not after sequential offload, which keeps the weights in its hooks: it runs last)."""
        if sequential:
            p.enable_sequential_cpu_offload()
            return time_images(p, self.plan, self.device, steps)
        p.enable_model_cpu_offload()
        try:
            return time_images(p, self.plan, self.device, steps)
        finally:
            p.remove_all_hooks()
            base = self.encoders + [self.pipe.vae, self.pipe.transformer]
            for m in p.components.values():
                if any(m is b for b in base):  # a replaced model (NF4, 4-bit T5) stays in CPU memory
                    m.to(self.device.type)

    def nf4_model_offload(self) -> None:
        nf4 = self.nf4_transformer()
        with parked(self.pipe.transformer):
            timing = self.offloaded(pipeline_with(self.pipe, transformer=nf4))
        nf4.to("cpu")
        self.row("nf4_model_offload", timing, notes="the model card's recipe for small GPUs; T5 in bf16")

    def model_offload(self) -> None:
        self.row(
            "model_offload", self.offloaded(pipeline_with(self.pipe)), notes="bf16, one model on the GPU at a time"
        )

    def streamed_text_encoders(self, **changes: Any) -> dict[str, Any]:
        """Images with the text encoders streaming from CPU memory (`sd35ui.core.speed`); afterwards they are plain and
        resident again."""
        from accelerate.hooks import remove_hook_from_module

        from sd35ui.core import speed

        freed = sum(speed.module_bytes(m) for m in self.encoders)
        for m in self.encoders:
            m.to("cpu")
        weights = [m.state_dict() for m in self.encoders]  # the offload keeps these CPU tensors: put them back after
        p = pipeline_with(self.pipe, **changes)
        speed.offload_text_encoders_to_cpu(p)
        try:
            timing = time_images(p, self.plan, self.device)
        finally:
            for m, state in zip(self.encoders, weights):
                remove_hook_from_module(m, recurse=True)
                m.load_state_dict(state, assign=True)
                if hasattr(m, "tie_weights"):
                    m.tie_weights()
                m.to(self.device.type)
        timing["text_encoders_gib"] = freed / GIB
        return timing

    def offload_text_encoders(self) -> None:
        timing = self.streamed_text_encoders()
        self.row("offload_text_encoders", timing, notes="bf16; T5 + CLIPs stream from CPU per new prompt")

    def nf4_offload_text_encoders(self) -> None:
        nf4 = self.nf4_transformer()
        with parked(self.pipe.transformer):
            nf4.to(self.device.type)
            try:
                timing = self.streamed_text_encoders(transformer=nf4)
            finally:
                nf4.to("cpu")
        self.row("nf4_offload_text_encoders", timing, notes="NF4 transformer; T5 + CLIPs stream per new prompt")

    def nf4_t5_4bit_model_offload(self) -> None:
        from sd35ui.core import speed

        nf4 = self.nf4_transformer()
        with parked(self.pipe.transformer, self.pipe.text_encoder_3):
            start = time.perf_counter()
            t5 = flop_counts.load_4bit_t5(self.pipe.text_encoder_3)
            t5_load_s = time.perf_counter() - start
            t5_gib = speed.module_bytes(t5) / GIB
            p = pipeline_with(self.pipe, transformer=nf4, text_encoder_3=t5)
            try:
                timing = self.offloaded(p)
            finally:
                nf4.to("cpu")
                del p, t5
        self.row(
            "nf4_t5_4bit_model_offload",
            timing,
            t5_4bit_load_s=t5_load_s,
            t5_4bit_gib=t5_gib,
            notes="NF4 transformer, 4-bit T5 (wo unquantized), model offload",
        )

    def compile_full(self) -> None:
        self.row("compile_full", compile_mode(self.pipe, self.plan, self.device, "full", self.baseline))

    def sequential_offload(self) -> None:
        self._nf4 = None
        gc.collect()
        timing = self.offloaded(pipeline_with(self.pipe), steps=self.plan.slow_steps, sequential=True)
        self.row("sequential_offload", timing, notes=f"{self.plan.slow_steps} steps: all weights stream every pass")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    deadline = started + args.budget_s if args.budget_s else None
    device = Device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here.")
    quick = args.quick
    if args.threads or (quick and not device.cuda):
        # One thread for --quick: on a busy shared CPU, torch's threads spin-wait on each other (several x slower).
        torch.set_num_threads(args.threads or 1)
    shape = args.shape or ("full" if device.cuda else ("mini" if quick else "reduced"))
    size = args.size or (1024 if device.cuda else (128 if quick else 256))
    steps = args.steps or (40 if device.cuda else (2 if quick else 4))
    images = args.images or (2 if device.cuda else 1)
    modes = args.modes.split(",") if args.modes else list(ALL_MODES)
    unknown = set(modes) - set(ALL_MODES)
    if unknown:
        raise SystemExit(f"Unknown mode(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_MODES)}.")
    if quick and not args.modes:
        modes = list(QUICK_MODES)
    models = args.models.split(",")
    if set(models) - {"tiny", "fullsize"}:
        raise SystemExit(f"--models takes a comma list of tiny and fullsize, got {args.models!r}.")

    import diffusers
    import transformers

    from sd35ui.models import fullsize

    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": device.name,
        "dtype": str(device.dtype),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "quick": quick,
        "args": vars(args),
        "fullsize_shape": {"name": shape, **fullsize.shape_named(shape).to_dict()},
    }
    report = Report(meta, args.json)
    meta["peak_tflops_at_start"] = device.measure_matmul_tflops(quick)
    print(
        f"{device.name} ({device.type}), {device.dtype}: dense matmul {device.peak_tflops:.3g} TFLOP/s measured; "
        f"floor = transformer FLOPs at that rate",
        flush=True,
    )
    print(format_row(), flush=True)

    for model in models:  # in the order given: on a GPU the full-size model first, where the time budget matters
        if model == "tiny":
            from sd35ui.core.pipeline import LoadOptions, load_pipeline, model_spec
            from sd35ui.models.tiny import ensure_tiny_model

            ensure_tiny_model()  # built once per cache; loading is what is timed
            start = time.perf_counter()
            pipe = load_pipeline(LoadOptions(model="tiny-random", device=device.type))
            device.sync()
            load_s = time.perf_counter() - start
            tiny_steps = args.tiny_steps or (8 if quick else 40)
            plan = Plan("tiny-random", model_spec("tiny-random").default_size, tiny_steps, 4.5, images, 2)
            ModeRunner(pipe, load_s, plan, device, report, deadline).run([m for m in modes if m in TINY_MODES])
        else:
            start = time.perf_counter()
            pipe = fullsize.build_pipeline(shape, device=device.type)
            device.sync()
            load_s = time.perf_counter() - start
            plan = Plan(pipe.name_or_path, size, steps, 4.5, images, args.slow_steps)
            # On a CPU the sheet runs on the tiny model only: 12 full-size images would take many minutes.
            full_modes = [m for m in modes if device.cuda or m != "sheet"]
            ModeRunner(pipe, load_s, plan, device, report, deadline).run(full_modes)
        del pipe
        gc.collect()
        if device.cuda:
            torch.cuda.empty_cache()

    # Measured again at the end: on a shared machine the rate moves with other jobs' load, and the floor is the
    # best the device did. Every row's ratios are recomputed with that best rate.
    meta["peak_tflops_at_end"] = device.measure_matmul_tflops(quick)
    meta["peak_tflops_measured"] = device.peak_tflops
    meta["load_average_at_end"] = os.getloadavg()
    for row in report.data["results"]:
        row.update(floor_ratios(row["flops_per_image"], row, device.peak_tflops, device.cuda))
    meta["wall_s"] = time.perf_counter() - started
    report.save()
    print(f"\nAll results, against the best matmul rate of the run ({device.peak_tflops:.3g} TFLOP/s):")
    print(format_row())
    for row in report.data["results"]:
        print(format_row(row))
    for item in report.data["skipped"]:
        print(f"  skipped {item['model']} {item['mode']}: {item['why']}")
    if args.json:
        print(f"wrote {args.json}")
    return report.data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI preset on a CPU: mini shape, 128 px, few steps")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--models", default="fullsize,tiny", help="comma list of: fullsize, tiny (run in this order)")
    parser.add_argument(
        "--shape",
        choices=("full", "reduced", "mini"),
        help="full-size model shape (default: full on CUDA, reduced on a CPU, mini with --quick)",
    )
    parser.add_argument("--size", type=int, help="image width and height (default 1024 on CUDA, 256 / 128 on CPU)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 40 on CUDA, 4 / 2 on CPU)")
    parser.add_argument("--tiny-steps", type=int, help="steps for the tiny model (default 40; 8 with --quick)")
    parser.add_argument("--slow-steps", type=int, default=4, help="steps for sequential offload (default 4)")
    parser.add_argument("--images", type=int, help="timed images per mode, after one warm-up (default 2 on CUDA, 1)")
    parser.add_argument("--modes", help=f"comma list (default: all that apply): {', '.join(ALL_MODES)}")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 with --quick)")
    parser.add_argument(
        "--budget-s",
        type=float,
        help="after this many seconds start no more modes (each model's eager run still runs)",
    )
    parser.add_argument("--json", type=Path, help="write the results here (rewritten after every result)")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = Path(tempfile.gettempdir()) / "sd35ui-bench.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
