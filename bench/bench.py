"""Where the time goes, and how far from the compute floor: one benchmark for sd35ui, on whatever device it runs.

Models: the built-in tiny model (through the app's own loader) and the random full-size SD3.5 Medium
(`sd35ui.models.fullsize`: the real shapes; reduced shapes on a CPU). For each, in one process: load time; seconds per
image (new prompt, and prompt from the cache); iterations per second; the share of text encoding, denoising and VAE
decoding; peak memory (CUDA peak allocated and reserved, process RSS sampled every 20 ms); and the transformer's FLOPs
counted analytically for the shapes that ran, against the device's own matrix-multiply rate measured right after
each image (the "floor": the time the transformer's FLOPs would take at that rate).

Every timed figure is the median of several images or rounds with its spread, and is marked unstable when the
spread is over 10% (`bench/rounds.py`); what is compared (compiled vs not, sheet vs single images, VAE layouts) runs
interleaved. On a CPU torch uses one thread unless --threads.

Modes, each measured before it is recommended: eager (bf16 on CUDA, float32 on a CPU; PyTorch SDPA), the attention
kernels, the VAE in channels_last, torch.compile regional and full (compile time cold and warm, images to pay back),
and on CUDA: text encoders offloaded, NF4 transformer, model and sequential CPU offload, 4-bit T5. Also: a profile
of one transformer forward by kind of work, and a contact sheet against its cells one by one.

    python bench/bench.py --quick --json outputs/bench-quick.json      # CPU, CI: well under a minute
    python bench/bench.py --json outputs/bench-cuda.json               # CUDA: full size, 1024x1024, 40 steps
    python bench/bench.py --shape reduced --size 256 --steps 4         # CPU, real widths, 3 layers
    bash bench/gpu_check.sh                                            # the GPU check: several runs of this script
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import shutil
import signal
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
from bench import rounds as rounds_lib  # noqa: E402
from bench import sheet_bench  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # a cold compile cache, so "compile_s" is what a first start pays
    _inductor_cache = tempfile.mkdtemp(prefix="sd35ui-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _inductor_cache
    atexit.register(shutil.rmtree, _inductor_cache, ignore_errors=True)
# Files in inductor's on-disk cache when this process started: 0 means its first compile is a cold one.
INDUCTOR_CACHE_FILES_AT_START = sum(len(files) for _, _, files in os.walk(os.environ["TORCHINDUCTOR_CACHE_DIR"]))

GIB = 2**30
# Each matmul-rate measurement lasts at least this long (an 8192^3 bf16 product: 1.4 ms on an H200), and after an
# image at least this share of the image's time, so that a short burst of other load does not decide the rate.
MATMUL_MIN_S = 0.2
MATMUL_SHARE = 0.1
H200_BF16_TFLOPS = 790  # measured on this project's H200s (8192^3 bf16 matmul, random data): the floor
# The order modes run in: the most decisive figures first (a time limit may cut the rest), sequential offload last.
# NF4 + model offload is the small-GPU recipe whose peak memory decides the 8-12 GB advice; the streamed text
# encoders decide the 8-16 GB advice.
ALL_MODES = (
    "nf4_model_offload",
    "eager",
    "compile_regional",
    "compile_regional_warm",
    "sheet",
    "offload_text_encoders",
    "nf4_offload_text_encoders",
    "nf4",
    "model_offload",
    "profile",
    "attention",
    "vae_channels_last",
    "fastest",
    "nf4_t5_4bit_model_offload",
    "compile_full",
    "sequential_offload",
)
# Run only when asked for: meant for a second process started with the first one's TORCHINDUCTOR_CACHE_DIR (the
# compile a second start of the app pays); in the process that compiled already it would measure in-memory caches.
ON_REQUEST = {"compile_regional_warm"}
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
# What bench.py runs on (importlib_metadata: diffusers imports it), and bitsandbytes for the NF4 modes.
PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "huggingface_hub",
    "tokenizers",
    "importlib_metadata",
)


# --- measuring ------------------------------------------------------------------------------------------------


class Device:
    """The device under test: synchronisation, memory counters and the matmul rate that defines the floor."""

    def __init__(self, name: str, quick: bool = False) -> None:
        import torch

        self.torch = torch
        self.type = name
        self.cuda = name == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.name = torch.cuda.get_device_name(0) if self.cuda else cpu_name()
        self.matmul_n = 8192 if self.cuda else (1024 if quick else 2048)
        self.peak_tflops = 0.0  # the best rate seen in the run (for the record; the floors use the rate per image)
        self._peaks = (0.0, 0.0)  # CUDA peaks (allocated, reserved) before the last matmul, which is not counted

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        gc.collect()
        self._peaks = (0.0, 0.0)
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def allocated_gib(self) -> float | None:
        return self.torch.cuda.memory_allocated() / GIB if self.cuda else None

    def peak_gib(self) -> tuple[float | None, float | None]:
        if not self.cuda:
            return None, None
        now = (self.torch.cuda.max_memory_allocated() / GIB, self.torch.cuda.max_memory_reserved() / GIB)
        return max(now[0], self._peaks[0]), max(now[1], self._peaks[1])

    def measure_matmul_tflops(self, min_s: float = MATMUL_MIN_S) -> float:
        """The device's dense matmul rate in the model's dtype, measured now for at least `min_s` (under the same
        load as the images around it). Its own memory is kept out of the mode's peak."""
        torch = self.torch
        peaks = self.peak_gib()
        n = self.matmul_n
        a = torch.randn(n, n, device=self.type, dtype=self.dtype)
        b = torch.randn(n, n, device=self.type, dtype=self.dtype)
        for _ in range(3 if self.cuda else 1):
            a @ b
        self.sync()
        reps, start = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - start < min_s:
            a @ b
            reps += 1
            if self.cuda and reps % 10 == 0:
                self.sync()
        self.sync()
        seconds = (time.perf_counter() - start) / reps
        del a, b
        if self.cuda:  # the peaks so far are kept; the matmul's buffers leave both counters
            self._peaks = (peaks[0] or 0.0, peaks[1] or 0.0)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        measured = 2 * n**3 / seconds / 1e12
        self.peak_tflops = max(self.peak_tflops, measured)
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
    images: int  # timed images per mode (after one warm-up): the rounds of its median and spread
    slow_steps: int  # steps for sequential offload, which streams the whole transformer every pass
    sheet_rounds: int = 3  # interleaved rounds of the sheet mode

    def sheet_steps(self) -> str:
        """The Steps axis of the sheet mode: a quarter and a half of the plan's steps (10, 20 at 40), two values."""
        return f"{max(1, self.steps // 4)}, {max(2, self.steps // 2)}"


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
    pipe: Any, plan: Plan, device: Device, steps: int | None = None, switch: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """One warm-up image (timed on its own: it holds compilation and first-call costs), then `plan.images` timed
    ones, each with a new prompt and followed by a measurement of the device's matmul rate (the floor of that
    image). Medians and spreads of the timed images; memory peaks over all of them.

    With `switch`, each round makes a reference image and a measured one with the same settings, in an order
    rotated each round (`rounds.interleave`); `switch("reference")` and `switch("measured")` set the pipeline up
    for each. On a shared machine the load then hits both alike; the reference's figures come back as
    "reference", the per-round ratios as "speedup_paired"."""
    steps = steps or plan.steps
    device.reset_peak()

    def image(which: str) -> Callable[[int], dict[str, Any]]:
        def run(round_: int) -> dict[str, Any]:
            if switch is not None:
                switch(which)
            result = one_image(pipe, settings_for(plan, round_ + 1, steps), device)
            seconds = result["encode"] + result["denoise"] + result["decode"]
            result["tflops"] = device.measure_matmul_tflops(max(MATMUL_MIN_S, MATMUL_SHARE * seconds))
            return result

        return run

    variants = {"measured": image("measured")} if switch is None else {w: image(w) for w in ("reference", "measured")}
    with RssSampler() as rss:
        if switch is not None:
            switch("measured")
        first = one_image(pipe, settings_for(plan, 0, steps), device)
        results = rounds_lib.interleave(variants, plan.images)
    runs = results["measured"]
    peak_alloc, peak_reserved = device.peak_gib()
    timing = {
        **summarize(runs, steps),
        "images": plan.images,
        "first_image_s": first["encode"] + first["denoise"] + first["decode"],
        "peak_alloc_gib": peak_alloc,
        "peak_reserved_gib": peak_reserved,
        "peak_rss_gib": rss.peak_gib,
        "finite": all(r["finite"] for rs in results.values() for r in rs) and first["finite"],
        "text_tokens": first["text_tokens"],
        "last_image": runs[-1]["image"],
    }
    if switch is not None:
        reference = results["reference"]
        timing["reference"] = summarize(reference, steps)
        cached = [r["denoise"] + r["decode"] for r in runs]
        speedup = rounds_lib.ratio([r["denoise"] + r["decode"] for r in reference], cached).to_dict()
        timing["figures"]["speedup_paired"] = speedup
        timing["speedup_paired"] = speedup["median"]
        timing["max_pixel_difference_vs_reference"] = max(
            max_pixel_difference(m["image"], r["image"]) for m, r in zip(runs, reference)
        )
    return timing


def summarize(runs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Medians of timed images, and the figures (median, spread) of the per-image totals."""
    phase = {k: statistics.median(r[k] for r in runs) for k in ("encode", "denoise", "decode")}
    figures = {
        "s_per_image": rounds_lib.figure(r["encode"] + r["denoise"] + r["decode"] for r in runs),
        "s_per_image_cached": rounds_lib.figure(r["denoise"] + r["decode"] for r in runs),
        "denoise_s": rounds_lib.figure(r["denoise"] for r in runs),
    }
    if all("tflops" in r for r in runs):
        figures["matmul_tflops"] = rounds_lib.figure(r["tflops"] for r in runs)
    return {
        "steps": steps,
        "s_per_image": figures["s_per_image"].median,
        "s_per_image_cached": figures["s_per_image_cached"].median,
        "it_per_s": steps / phase["denoise"],
        "encode_s": phase["encode"],
        "denoise_s": phase["denoise"],
        "decode_s": phase["decode"],
        "share": {k: v / sum(phase.values()) for k, v in phase.items()},
        "figures": {name: fig.to_dict() for name, fig in figures.items()},
        "per_image": [{k: r[k] for k in ("encode", "denoise", "decode", "tflops") if k in r} for r in runs],
    }


def floor_fields(pipe: Any, plan: Plan, device: Device, timing: dict[str, Any]) -> dict[str, Any]:
    """FLOPs of the image and how its time compares with the floor at the device's measured matmul rate."""
    from sd35ui.core import generate

    config = pipe.transformer.config
    guided = generate.is_guided(plan.guidance)
    flops = flop_counts.image_flops(config, plan.size, plan.size, timing["steps"], guided, timing["text_tokens"])
    return {"flops_per_image": flops, **floor_ratios(flops, timing, device.cuda)}


def floor_ratios(flops: int, timing: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """Each image against the floor at the matmul rate measured right after it (so load from other jobs slows both
    alike); the median of those ratios and their spread."""
    images = timing["per_image"]
    x_floor = rounds_lib.figure((r["denoise"] + r["decode"]) * r["tflops"] * 1e12 / flops for r in images)
    tflops = statistics.median(r["tflops"] for r in images)
    floor = flops / (tflops * 1e12)
    fields = {
        "floor_s": floor,
        "matmul_tflops": tflops,
        "x_floor": x_floor.median,  # 1.0 = every FLOP at the device's matmul rate, with free decoding
        "x_floor_denoise": statistics.median(r["denoise"] * r["tflops"] * 1e12 / flops for r in images),
        "floor_fraction": 1 / x_floor.median,
        "achieved_tflops": flops / timing["denoise_s"] / 1e12,
    }
    timing["figures"]["x_floor"] = x_floor.to_dict()
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


def compare_attention_kernels(pipe: Any, plan: Plan, device: Device, text_len: int, rounds: int = 3) -> dict[str, Any]:
    """One transformer forward with each SDPA kernel forced (no fallback), in interleaved rounds; the default is
    PyTorch's choice. Kernels that cannot run this shape or dtype here are listed as unavailable."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    inputs = transformer_inputs(pipe, plan, device, text_len)
    kernels = {
        "default": None,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }

    def forward(backend: Any) -> Callable[[int], float]:
        def run(_round: int) -> float:
            with sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext():
                return time_forward(pipe.transformer, inputs, device, reps=3)

        return run

    unavailable: dict[str, str] = {}
    for name, backend in kernels.items():
        try:
            forward(backend)(0)  # warm-up, and whether it runs at all
        except RuntimeError as exc:
            unavailable[name] = f"unavailable: {str(exc).splitlines()[0][:160]}"
    runnable = {name: forward(b) for name, b in kernels.items() if name not in unavailable}
    times = rounds_lib.interleave(runnable, rounds)
    figures = {name: rounds_lib.figure(t).to_dict() for name, t in times.items()}
    best = min(figures, key=lambda name: figures[name]["median"])
    speedup = rounds_lib.ratio(times["default"], times[best]).to_dict() if "default" in times else None
    return {
        "forward_s": {**{k: v["median"] for k, v in figures.items()}, **unavailable},
        "figures": figures,
        "best": best,
        "speedup_vs_default": speedup["median"] if speedup else None,
        "speedup_figure": speedup,
        "unstable": rounds_lib.unstable_names(figures),
    }


def compare_vae_layout(pipe: Any, plan: Plan, device: Device, rounds: int = 3) -> dict[str, Any]:
    """Decode the same latents with the VAE contiguous and channels_last, in interleaved rounds."""
    import torch

    from sd35ui.core import generate, speed

    latent = plan.size // 8
    g = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn(1, 16, latent, latent, generator=g).to(device.type, pipe.transformer.dtype)
    peaks: dict[str, float | None] = {}
    images: dict[str, Any] = {}

    def decode(layout: str) -> Callable[[int], float]:
        def run(_round: int) -> float:
            speed.set_vae_channels_last(pipe, layout == "channels_last")
            device.reset_peak()
            start = time.perf_counter()
            images[layout] = generate.decode(pipe, latents)[0]
            device.sync()
            seconds = time.perf_counter() - start
            peaks[layout] = device.peak_gib()[0]
            return seconds

        return run

    try:
        for layout in ("contiguous", "channels_last"):
            decode(layout)(-1)  # warm-up of each layout
        times = rounds_lib.interleave({k: decode(k) for k in ("contiguous", "channels_last")}, rounds)
    finally:
        speed.set_vae_channels_last(pipe, False)
    figures = {k: rounds_lib.figure(v).to_dict() for k, v in times.items()}
    figures["speedup"] = rounds_lib.ratio(times["contiguous"], times["channels_last"]).to_dict()
    return {
        "decode_s": {k: figures[k]["median"] for k in times},
        "speedup": figures["speedup"]["median"],
        "figures": figures,
        "unstable": rounds_lib.unstable_names(figures),
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


_compiled_in_this_process = False


def compile_cache_state() -> str:
    """What the next compile finds: "cold" (inductor's on-disk cache was empty when this process started and
    nothing was compiled since: a first start), "warm: on-disk cache" (left by an earlier process: a second start),
    or "warm: this process" (compiled here before; in-memory caches too)."""
    if _compiled_in_this_process:
        return "warm: this process"
    return "cold" if INDUCTOR_CACHE_FILES_AT_START == 0 else "warm: on-disk cache"


def compile_mode(
    pipe: Any,
    plan: Plan,
    device: Device,
    mode: str,
    text_len: int,
    attention: str = "default",
    backend: str = "inductor",
) -> dict[str, Any]:
    """Images with the transformer compiled (`mode`), each paired with an uncompiled one of the same settings in
    the same round (the same attention kernel); the compile time, measured on one transformer forward, with the
    state of inductor's cache it found (`compile_cache_state`), then again after a reset with the cache this
    compile left; and after how many images the compile has paid for itself."""
    global _compiled_in_this_process
    from sd35ui.core import speed

    transformer = pipe.transformer
    forward = transformer.forward
    compiled: dict[Any, Any] = {}

    def switch(which: str) -> None:
        if not compiled:  # after the first compiled forward: remember what compiling made, to switch it off and on
            compiled.update({m: m._compiled_call_impl for m in transformer.modules() if m._compiled_call_impl})
        for module, fn in compiled.items():
            module._compiled_call_impl = fn if which == "measured" else None

    inputs = transformer_inputs(pipe, plan, device, text_len)  # the shapes of one guided step
    cache = compile_cache_state()
    try:
        if attention != "default":
            speed.use_attention_kernel(transformer, attention)
        speed.compile_transformer(transformer, mode, backend=backend)
        compile_s = compile_seconds(transformer, inputs, device)
        _compiled_in_this_process = True
        timing = time_images(pipe, plan, device, switch=switch)
        uncompile(transformer)
        compiled.clear()
        speed.compile_transformer(transformer, mode, backend=backend)
        warm_compile_s = compile_seconds(transformer, inputs, device)
    finally:
        uncompile(transformer)
        transformer.forward = forward
    # Paid back only by a gain that held in every round; else a difference within the noise would give a figure.
    holds = timing["figures"]["speedup_paired"]["min"] > 1
    gain = timing["reference"]["s_per_image"] - timing["s_per_image"] if holds else 0.0
    timing.update(
        compile_s=compile_s,
        compile_cache=cache,
        compile_backend=backend,
        warm_cache_compile_s=warm_compile_s,
        payback_images=compile_s / gain if gain > 0 else None,
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


def sheet_vs_cells(pipe: Any, plan: Plan) -> dict[str, Any]:
    """A 2 x 2 contact sheet (Guidance across, Steps down) against its cells made one by one with `generate`, prompt
    cache cleared before each (what clicking Generate four times costs): `sheet_bench.compare` in
    `plan.sheet_rounds` interleaved rounds after one uncounted round."""
    from sd35ui.core import sheet
    from sd35ui.core.settings import ModelSpec

    spec_model = ModelSpec("bench", default_size=plan.size, max_size=max(plan.size, 1440), min_size=16)
    base = settings_for(plan, 500)
    spec = sheet.make_spec(base, "Guidance", "3, 4.5", "Steps", plan.sheet_steps(), model=spec_model)
    return sheet_bench.compare(pipe, spec, plan.sheet_rounds, warmup_round=True)


# --- the run ----------------------------------------------------------------------------------------------------


class Report:
    """The run's JSON: meta, one row per (model, mode) timed, extras, and each planned mode's status in order."""

    def __init__(self, meta: dict[str, Any], path: Path | None) -> None:
        self.data: dict[str, Any] = {
            "meta": meta,
            "modes": [],  # {model, mode, status: ok | error | timeout | skipped, seconds, limit_s, why}
            "results": [],
            "extras": {},
            "skipped": [],
            "errors": [],
        }
        self.path = path
        self.save()

    def add(self, row: dict[str, Any]) -> None:
        row = {k: v for k, v in row.items() if k != "last_image"}
        self.data["results"].append(row)
        self.save()
        print(format_row(row), flush=True)

    def extra(self, model: str, name: str, value: dict[str, Any]) -> None:
        self.data["extras"].setdefault(model, {})[name] = value
        self.save()
        shown = {k: v for k, v in value.items() if k != "figures"}
        print(f"  {model} {name}: {json.dumps(round_floats(shown), default=str)}", flush=True)

    def skip(self, model: str, mode: str, why: str) -> None:
        self.data["skipped"].append({"model": model, "mode": mode, "why": why})
        self.status(model, mode, "skipped", why=why)

    def error(self, model: str, mode: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.data["errors"].append({"model": model, "mode": mode, "error": text})
        self.save()
        print(f"  {model} {mode}: FAILED: {text}", file=sys.stderr, flush=True)
        if not isinstance(exc, ModeTimeout):
            traceback.print_exc()

    def status(self, model: str, mode: str, status: str, **more: Any) -> None:
        self.data["modes"].append({"model": model, "mode": mode, "status": status, **more})
        self.save()

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
    ("mode", "mode", 22, "s"),
    ("size", "size", 5, "d"),
    ("steps", "steps", 5, "d"),
    ("load_s", "load s", 7, ".2f"),
    ("s_per_image", "s/img", 8, ".3f"),
    ("spread:s_per_image", "±%", 4, ".0f"),
    ("s_per_image_cached", "cached", 8, ".3f"),
    ("it_per_s", "it/s", 7, ".2f"),
    ("enc", "enc%", 5, ".0f"),
    ("den", "den%", 5, ".0f"),
    ("dec", "dec%", 5, ".0f"),
    ("peak_alloc_gib", "GPU GiB", 8, ".2f"),
    ("peak_rss_gib", "RSS GiB", 8, ".2f"),
    ("x_floor", "x floor", 8, ".2f"),
    ("spread:x_floor", "±%", 4, ".0f"),
    ("speedup", "vs eager", 8, ".2f"),
    ("spread:speedup_paired", "±%", 4, ".0f"),
    ("unstable", "unstable (spread > 10%)", 0, "s"),
)


def cell_value(row: dict[str, Any], key: str) -> Any:
    if key.startswith("spread:"):
        spread = row.get("figures", {}).get(key.split(":", 1)[1], {}).get("spread")
        return None if spread is None else 100 * spread
    if key in ("enc", "den", "dec"):
        name = {"enc": "encode", "den": "denoise", "dec": "decode"}[key]
        return 100 * row["share"][name] if "share" in row else None
    if key == "speedup":  # interleaved with uncompiled images where measured so (compile modes; with a spread)
        return row.get("speedup_paired", row.get("speedup_vs_eager"))
    if key == "unstable":
        return ", ".join(rounds_lib.unstable_names(row.get("figures", {}))) or None
    return row.get(key)


def format_row(row: dict[str, Any] | None = None) -> str:
    cells = []
    for key, title, width, fmt in COLUMNS:
        if row is None:
            cells.append(f"{title:>{width}}" if fmt != "s" else f"{title:<{width}}")
            continue
        value = cell_value(row, key)
        if value is None:
            cells.append(f"{'-':>{width}}")
        elif fmt == "s":
            cells.append(f"{str(value)[:width] if width else str(value):<{width}}")
        else:
            cells.append(f"{value:>{width}{fmt}}")
    return " ".join(cells).rstrip()


class ModeTimeout(BaseException):
    """A mode ran past its time limit (`--mode-limits`, or what was left of `--budget-s`). A BaseException, like
    KeyboardInterrupt, so that no library's `except Exception` swallows it; `finally` blocks still clean up."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `ModeTimeout` in the main thread after `seconds` (SIGALRM): Python code between GPU calls sees it
    within a step. None: no limit."""
    if seconds is None:
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise ModeTimeout(f"stopped at its time limit of {seconds:.3g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ModeRunner:
    """Runs the modes of one model in ALL_MODES' order (each finds the pipeline as loaded), each within its own time
    limit and what is left of the run's budget."""

    def __init__(self, pipe: Any, load_s: float, plan: Plan, device: Device, report: Report, run: RunLimits) -> None:
        self.pipe, self.plan, self.device, self.report, self.limits = pipe, plan, device, report, run
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
        self._text_len: int | None = None

    @property
    def encoders(self) -> list[Any]:
        return [self.pipe.text_encoder, self.pipe.text_encoder_2, self.pipe.text_encoder_3]

    @property
    def text_len(self) -> int:
        """Text tokens of one encoded prompt (77 CLIP + the T5 length), from one encoding."""
        if self._text_len is None:
            from sd35ui.core import generate

            self._text_len = int(generate.encode(self.pipe, "a fox", "", True).prompt.shape[1])
        return self._text_len

    def row(self, mode: str, timing: dict[str, Any], **more: Any) -> None:
        fields = {**self.base, "mode": mode, **timing, **floor_fields(self.pipe, self.plan, self.device, timing)}
        if mode != "eager":
            fields.pop("load_s", None)
            if self.baseline is not None:  # separate runs, not interleaved: no spread (see speedup_paired)
                fields["speedup_vs_eager"] = self.baseline["s_per_image_cached"] / timing["s_per_image_cached"]
        fields["unstable"] = rounds_lib.unstable_names(fields["figures"])
        self.report.add({**fields, **more})

    def run(self, modes: list[str]) -> None:
        """Run `modes` in the order given (`resolve_modes` keeps ALL_MODES' order)."""
        for mode in modes:
            self.run_one(mode)

    def run_one(self, mode: str) -> None:
        name = self.plan.model
        if mode in CUDA_ONLY and not self.device.cuda:
            self.report.skip(name, mode, CUDA_ONLY[mode])
            return
        limit = self.limits.for_mode(mode)
        if limit is not None and limit <= 0:
            self.report.skip(name, mode, "out of the --budget-s time")
            return
        start = time.perf_counter()
        status, why = "ok", None
        try:
            with time_limit(limit):
                getattr(self, mode)()
        except ModeTimeout as exc:  # the mode's own limit: the next mode still runs
            status, why = "timeout", str(exc)
            self.report.error(name, mode, exc)
        except Exception as exc:  # noqa: BLE001 - one broken mode must not lose the other measurements
            status, why = "error", "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.report.error(name, mode, exc)
        self.report.status(name, mode, status, seconds=time.perf_counter() - start, limit_s=limit, why=why)

    # One method per mode, in ALL_MODES' order.

    def nf4_transformer(self) -> Any:
        if self._nf4 is None:
            start = time.perf_counter()
            self._nf4 = flop_counts.load_nf4_transformer(self.pipe.transformer)
            self.device.sync()
            self.nf4_load_s = time.perf_counter() - start
        return self._nf4

    def nf4_model_offload(self) -> None:
        nf4 = self.nf4_transformer()
        with parked(self.pipe.transformer):
            timing = self.offloaded(pipeline_with(self.pipe, transformer=nf4))
        nf4.to("cpu")
        notes = "the model card's recipe for small GPUs; T5 in bf16"
        self.row("nf4_model_offload", timing, nf4_load_s=self.nf4_load_s, notes=notes)

    def eager(self) -> None:
        self.baseline = time_images(self.pipe, self.plan, self.device)
        self.row("eager", self.baseline, notes="PyTorch SDPA with its default kernel; all models resident")

    def compiled(self, mode: str, attention: str = "default") -> dict[str, Any]:
        return compile_mode(
            self.pipe, self.plan, self.device, mode, self.text_len, attention, backend=self.limits.backend
        )

    def compile_regional(self) -> None:
        self.row("compile_regional", self.compiled("regional"))

    def compile_regional_warm(self) -> None:
        """compile_regional in a process started after another one compiled with the same inductor cache."""
        timing = self.compiled("regional")
        self.row("compile_regional_warm", timing, inductor_cache_files_at_start=INDUCTOR_CACHE_FILES_AT_START)

    def sheet(self) -> None:
        self.report.extra(self.plan.model, "sheet", sheet_vs_cells(self.pipe, self.plan))

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
        # kept only when faster in every round (the ratio's worst round above 1.02)
        self.vae_wins = result["figures"]["speedup"]["min"] > 1.02

    def fastest(self) -> None:
        from sd35ui.core import speed

        if self.vae_wins:
            speed.set_vae_channels_last(self.pipe, True)
        try:
            timing = self.compiled("regional", self.best_attention)
        finally:
            speed.set_vae_channels_last(self.pipe, False)
        notes = f"regional compile, attention {self.best_attention}, VAE channels_last {self.vae_wins}"
        self.row("fastest", timing, notes=notes)

    def nf4(self) -> None:
        nf4 = self.nf4_transformer()
        with parked(self.pipe.transformer):
            nf4.to(self.device.type)
            try:
                timing = time_images(pipeline_with(self.pipe, transformer=nf4), self.plan, self.device)
            finally:
                nf4.to("cpu")
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
        self.row("compile_full", self.compiled("full"))

    def sequential_offload(self) -> None:
        self._nf4 = None
        gc.collect()
        timing = self.offloaded(pipeline_with(self.pipe), steps=self.plan.slow_steps, sequential=True)
        self.row("sequential_offload", timing, notes=f"{self.plan.slow_steps} steps: all weights stream every pass")


@dataclass
class RunLimits:
    """Time limits of the run: each mode's own (`--mode-limits`), and the run's deadline (`--budget-s`)."""

    mode_limits: dict[str, float]
    deadline: float | None
    backend: str = "inductor"  # torch.compile's backend (aot_eager: tracing only, for dry runs on a CPU)

    def for_mode(self, mode: str) -> float | None:
        """Seconds the mode may take: its own limit, cut to what is left of the budget; None for no limit."""
        limits = [self.mode_limits[mode]] if mode in self.mode_limits else []
        if self.deadline is not None:
            limits.append(self.deadline - time.perf_counter())
        return min(limits) if limits else None


def parse_mode_limits(text: str | None) -> dict[str, float]:
    """'eager=60,sheet=90' -> {'eager': 60.0, 'sheet': 90.0}."""
    limits: dict[str, float] = {}
    for item in filter(None, (text or "").split(",")):
        name, sep, seconds = item.partition("=")
        if not sep or name.strip() not in ALL_MODES:
            raise SystemExit(f"--mode-limits takes mode=seconds pairs of known modes, got {item!r}.")
        try:
            limits[name.strip()] = float(seconds)
        except ValueError:
            raise SystemExit(f"--mode-limits: {seconds!r} is not a number of seconds.") from None
    return limits


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages the bench runs on (None: not installed), bitsandbytes included."""
    versions: dict[str, str | None] = {}
    for name in (*PACKAGES, "bitsandbytes"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_packages() -> int:
    """Print the versions bench.py would run on; 1 (with what to do) when a package it needs is missing."""
    versions = package_versions()
    print(f"python {platform.python_version()}")
    for name, version in versions.items():
        print(f"{name} {version or 'not installed'}")
    missing = [name for name in PACKAGES if versions[name] is None]
    if missing:
        print(
            f"missing Python packages: {', '.join(missing)}. On a machine without a package registry, run "
            "bash bench/build_gpu_bundle.sh where PyPI is reachable and carry .whl (see bench/gpu_check.sh)."
        )
        return 1
    if versions["bitsandbytes"] is None:
        print("bitsandbytes is not installed: the NF4 modes will fail")
    return 0


def resolve_modes(args: argparse.Namespace) -> list[str]:
    if not args.modes:
        return [m for m in ALL_MODES if m not in ON_REQUEST and (m in QUICK_MODES or not args.quick)]
    modes = args.modes.split(",")
    unknown = set(modes) - set(ALL_MODES)
    if unknown:
        raise SystemExit(f"Unknown mode(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_MODES)}.")
    return [m for m in ALL_MODES if m in modes]


def planned_modes(models: list[str], modes: list[str], device: Device, explicit: bool) -> list[tuple[str, str]]:
    """(model kind, mode) in the order they will run. On a CPU the full-size model's sheet (4 cells x 2 ways x 4
    rounds) runs only when `--modes` names it (`explicit`): at the reduced shape that is many minutes."""
    planned = []
    for model in models:
        if model == "tiny":
            planned += [("tiny", m) for m in modes if m in TINY_MODES]
        else:
            planned += [("fullsize", m) for m in modes if device.cuda or m != "sheet" or explicit]
    return planned


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    limits = RunLimits(
        parse_mode_limits(args.mode_limits), started + args.budget_s if args.budget_s else None, args.compile_backend
    )
    device_type = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here.")
    quick = args.quick
    threads = rounds_lib.set_threads(args.threads, cuda=device_type == "cuda")
    device = Device(device_type, quick)
    shape = args.shape or ("full" if device.cuda else ("mini" if quick else "reduced"))
    size = args.size or (1024 if device.cuda else (128 if quick else 256))
    steps = args.steps or (40 if device.cuda else (2 if quick else 4))
    models = args.models.split(",")
    if set(models) - {"tiny", "fullsize"}:
        raise SystemExit(f"--models takes a comma list of tiny and fullsize, got {args.models!r}.")
    planned = planned_modes(models, resolve_modes(args), device, explicit=bool(args.modes))

    from sd35ui.models import fullsize

    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/bench.py", *sys.argv[1:]]),
        "device": device.type,
        "device_name": device.name,
        "dtype": str(device.dtype),
        "python": platform.python_version(),
        **package_versions(),
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "quick": quick,
        "args": vars(args),
        "planned_modes": [{"model": m, "mode": mode} for m, mode in planned],
        "inductor_cache_files_at_start": INDUCTOR_CACHE_FILES_AT_START,
        "spread": "(max - min) / median over the images or rounds; over 10% marks a figure unstable",
        "fullsize_shape": {"name": shape, **fullsize.shape_named(shape).to_dict()},
    }
    report = Report(meta, args.json)
    meta["peak_tflops_at_start"] = device.measure_matmul_tflops()
    print(
        f"{device.name} ({device.type}), {device.dtype}, {threads} torch thread(s): dense matmul "
        f"{meta['peak_tflops_at_start']:.3g} TFLOP/s now; each image's floor uses the rate measured right after it",
        flush=True,
    )
    print(format_row(), flush=True)

    for model in models:  # in the order given: on a GPU the full-size model first, where the time budget matters
        modes = [mode for kind, mode in planned if kind == model]
        if not device.cuda and all(mode in CUDA_ONLY for mode in modes):  # nothing to run: no model to build
            name = (
                "tiny-random" if model == "tiny" else fullsize.FULLSIZE_NAME + ("" if shape == "full" else f"-{shape}")
            )
            for mode in modes:
                report.skip(name, mode, CUDA_ONLY[mode])
            continue
        pipe, plan, load_s = load_model(model, args, device, shape, size, steps)
        ModeRunner(pipe, load_s, plan, device, report, limits).run(modes)
        del pipe
        gc.collect()
        if device.cuda:
            torch.cuda.empty_cache()

    meta["peak_tflops_at_end"] = device.measure_matmul_tflops()
    meta["peak_tflops_measured"] = device.peak_tflops
    meta["load_average_at_end"] = os.getloadavg()
    meta["wall_s"] = time.perf_counter() - started
    report.save()
    print_summary(report, args.json)
    return report.data


def load_model(
    model: str, args: argparse.Namespace, device: Device, shape: str, size: int, steps: int
) -> tuple[Any, Plan, float]:
    """The pipeline of `model` ("tiny" or "fullsize"), its plan, and the seconds its loading took."""
    images = args.images or 3
    start = time.perf_counter()
    if model == "tiny":
        from sd35ui.core.pipeline import LoadOptions, load_pipeline, model_spec
        from sd35ui.models.tiny import ensure_tiny_model

        ensure_tiny_model()  # built once per cache; loading is what is timed
        start = time.perf_counter()
        pipe = load_pipeline(LoadOptions(model="tiny-random", device=device.type))
        tiny_steps = args.tiny_steps or (8 if args.quick else 40)
        plan = Plan("tiny-random", model_spec("tiny-random").default_size, tiny_steps, 4.5, images, 2)
    else:
        from sd35ui.models import fullsize

        pipe = fullsize.build_pipeline(shape, device=device.type)
        plan = Plan(pipe.name_or_path, size, steps, 4.5, images, args.slow_steps)
    device.sync()
    plan.sheet_rounds = args.sheet_rounds
    return pipe, plan, time.perf_counter() - start


def print_summary(report: Report, json_path: Path | None) -> None:
    print("\nAll results (spread = (max - min) / median of the images; over 10% = unstable):")
    print(format_row())
    for row in report.data["results"]:
        print(format_row(row))
    for item in report.data["modes"]:
        if item["status"] != "ok":
            print(f"  {item['status']} {item['model']} {item['mode']}: {item.get('why')}")
    if json_path:
        print(f"wrote {json_path}")


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
    parser.add_argument("--images", type=int, help="timed images per mode after one warm-up: its rounds (default 3)")
    parser.add_argument("--sheet-rounds", type=int, default=3, help="interleaved rounds of the sheet mode (default 3)")
    parser.add_argument(
        "--modes",
        help=f"comma list, run in this order: {', '.join(ALL_MODES)} (default: all that apply but "
        f"{', '.join(sorted(ON_REQUEST))})",
    )
    parser.add_argument("--mode-limits", help="seconds each mode may take, e.g. eager=60,sheet=90 (default: none)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on a CPU run, see bench/rounds.py)")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend of the compile modes (aot_eager: tracing only, for dry runs)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="after this many seconds start no more modes, and cut the running one's limit to what is left",
    )
    parser.add_argument("--json", type=Path, help="write the results here (rewritten after every result)")
    parser.add_argument("--check-packages", action="store_true", help="print the package versions and exit")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = Path(tempfile.gettempdir()) / "sd35ui-bench.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.check_packages:
        raise SystemExit(check_packages())
    return run(args)


if __name__ == "__main__":
    main()
