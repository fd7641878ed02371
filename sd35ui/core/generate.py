"""The generation service: settings in, a result (image, exact settings, seed used, timings) out.

Split into encode / denoise / decode so that the contact-sheet engine can reuse each part (one encoding per
distinct prompt, decoding as cells finish). A stop signal is checked after every step; stopping raises
`GenerationStopped` and returns no half-finished image.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sd35ui.core.settings import GenerationSettings

StepCallback = Callable[[int, int], None]  # (steps done, total steps)
PROMPT_CACHE_SIZE = 32

# State kept per pipeline lives beside it, keyed by the pipeline object in weak dictionaries: released with the
# pipeline, and never handed to another. (Keyed by id(pipe) it was neither: an id is reused by the next object at
# that address, so a new pipeline could get the old one's lock, residency and cached embeddings.)
# The pipeline's scheduler keeps per-call state, so one pipeline runs one generation at a time.
_pipe_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_pipe_numbers: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_numbers = itertools.count()
_locks_guard = threading.Lock()


class GenerationStopped(Exception):
    """The user pressed Stop; no image was made."""


class GenerationOutOfMemory(RuntimeError):
    """The GPU ran out of memory; memory has been freed and the message says what to change."""


def pipe_lock(pipe: Any) -> threading.Lock:
    with _locks_guard:
        return _pipe_locks.setdefault(pipe, threading.Lock())


def pipe_number(pipe: Any) -> int:
    """A number no other pipeline of this process gets, not even one made later at the same address: what caches
    that outlive a pipeline (`PromptCache`) key it by."""
    with _locks_guard:
        if pipe not in _pipe_numbers:
            _pipe_numbers[pipe] = next(_numbers)
        return _pipe_numbers[pipe]


@dataclass(frozen=True)
class Embeddings:
    prompt: Any
    negative: Any | None
    pooled: Any
    negative_pooled: Any | None


@dataclass(frozen=True)
class GenerationResult:
    image: Image.Image
    settings: GenerationSettings  # with the seed actually used
    model: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds: encode, denoise, decode, total
    recipe: dict[str, Any] = field(default_factory=dict)  # how the pipeline was loaded (sd35ui.core.pipeline.recipe)

    @property
    def seed(self) -> int:
        assert self.settings.seed is not None
        return self.settings.seed


def model_name(pipe: Any) -> str:
    options = getattr(pipe, "sd35ui_options", None)
    return options.model if options is not None else str(getattr(pipe, "name_or_path", "unknown"))


def max_sequence_length(pipe: Any) -> int:
    """T5 tokens read per prompt: 256 for SD3.5, or what a built-in model was trained with."""
    return int(getattr(pipe, "sd35ui_max_sequence_length", 256))


class PromptCache:
    """Encoded texts by (pipeline, text), least recently used out first. A prompt and a negative prompt are encoded
    separately, so a sheet encodes its negative prompt once for all its prompts, and a cell without guidance (which
    needs no negative) reuses the encoding its guided neighbours made. Each text is encoded exactly as
    `encode_prompt` encodes a prompt or a negative prompt (each on its own, through the same text-encoder calls)."""

    def __init__(self, size: int = PROMPT_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.misses = 0  # texts encoded

    def text(self, pipe: Any, text: str) -> tuple[Any, Any]:
        """(embeddings, pooled embeddings) of one text."""
        key = (pipe_number(pipe), text)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        encoded = encode_text(pipe, text)
        with self._lock:
            self.misses += 1
            self._items[key] = encoded
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return encoded

    def get(self, pipe: Any, prompt: str, negative: str, guided: bool) -> Embeddings:
        embeds, pooled = self.text(pipe, prompt)
        if not guided:
            return Embeddings(embeds, None, pooled, None)
        negative_embeds, negative_pooled = self.text(pipe, negative)
        return Embeddings(embeds, negative_embeds, pooled, negative_pooled)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


prompt_cache = PromptCache()


def encode_text(pipe: Any, text: str) -> tuple[Any, Any]:
    """(embeddings, pooled embeddings) of one text, as `encode_prompt` makes them for a prompt (and, through the
    same calls, for a negative prompt)."""
    import torch

    with torch.inference_mode():
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=text,
            prompt_2=None,
            prompt_3=None,
            do_classifier_free_guidance=False,
            device=pipe._execution_device,
            max_sequence_length=max_sequence_length(pipe),
        )
    return embeds, pooled


def encode(pipe: Any, prompt: str, negative: str, guided: bool) -> Embeddings:
    """A prompt's embeddings (and its negative prompt's, when guided), not cached."""
    embeds, pooled = encode_text(pipe, prompt)
    if not guided:
        return Embeddings(embeds, None, pooled, None)
    negative_embeds, negative_pooled = encode_text(pipe, negative)
    return Embeddings(embeds, negative_embeds, pooled, negative_pooled)


def without_t5(pipe: Any, embeddings: Embeddings) -> Embeddings:
    """`embeddings` with T5's part zeroed: the last `max_sequence_length` tokens of the prompt embeddings, where
    diffusers puts zeros when the pipeline has no T5. The pooled embeddings are the CLIPs' alone and stay."""

    def zeroed(embeds: Any) -> Any:
        if embeds is None:
            return None
        out = embeds.clone()
        out[:, embeds.shape[1] - max_sequence_length(pipe) :, :] = 0
        return out

    return Embeddings(
        zeroed(embeddings.prompt), zeroed(embeddings.negative), embeddings.pooled, embeddings.negative_pooled
    )


def embeddings_for(pipe: Any, settings: GenerationSettings, cache: PromptCache | None = None) -> Embeddings:
    """The prompt embeddings `settings` call for, through the prompt cache: T5 off reuses the prompt's full
    encoding with T5's part zeroed, so switching T5 encodes nothing again."""
    embeddings = (cache if cache is not None else prompt_cache).get(
        pipe, settings.prompt, settings.negative_prompt, is_guided(settings.guidance)
    )
    return without_t5(pipe, embeddings) if settings.t5_prompt == "Off" else embeddings


def is_guided(guidance: float) -> bool:
    return guidance > 1.0  # diffusers turns classifier-free guidance off at <= 1 (one pass per step, not two)


# The sampler setting's values: diffusers' schedulers that SD3's pipeline runs on flow-matching sigmas.
SCHEDULERS = {
    "Euler": "FlowMatchEulerDiscreteScheduler",
    "Heun": "FlowMatchHeunDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
}
# The schedule setting's values: FlowMatchEulerDiscreteScheduler's options that re-space the shifted sigmas.
SCHEDULE_FLAGS = {"Karras": "use_karras_sigmas", "Exponential": "use_exponential_sigmas", "Beta": "use_beta_sigmas"}


def loop_length(settings: GenerationSettings) -> int:
    """Iterations of the denoising loop (as the progress bar counts them): Heun evaluates the model twice a step
    but the last."""
    return 2 * settings.steps - 1 if settings.sampler == "Heun" else settings.steps


def skip_layer_iterations(settings: GenerationSettings) -> list[int]:
    """The loop iterations that make the extra skip-layer pass: those strictly inside (start, stop) x the loop's
    length, as diffusers' condition `i > n * start and i < n * stop` picks them (`denoise` passes n scaled for
    Heun, so the window is the same share of the loop for every sampler)."""
    if not settings.skip_layer_guided:
        return []
    n = loop_length(settings)
    return [i for i in range(n) if n * settings.slg_start < i < n * settings.slg_stop]


def model_calls(settings: GenerationSettings) -> int:
    """Transformer calls for `settings` (a call on a guided batch of two counts once): one per loop iteration, plus
    one per iteration in skip-layer guidance's window."""
    return loop_length(settings) + len(skip_layer_iterations(settings))


def transformer_passes(settings: GenerationSettings) -> int:
    """Images' worth of transformer work: two per loop iteration with classifier-free guidance, one without, plus
    the skip-layer passes (one image each)."""
    return loop_length(settings) * (2 if is_guided(settings.guidance) else 1) + len(skip_layer_iterations(settings))


def make_scheduler(config: Any, settings: GenerationSettings) -> Any:
    """A new scheduler for `settings`' sampler, schedule and shift, from the loaded scheduler's `config`."""
    import diffusers

    if settings.sampler == "DPM++ 2M":
        # DPM-Solver++ (2M) on flow sigmas, as diffusers documents for flow-matching models: the model predicts the
        # flow, sigmas are shifted like SD3's, the last step goes to sigma 0.
        return diffusers.DPMSolverMultistepScheduler(
            num_train_timesteps=config.get("num_train_timesteps", 1000),
            algorithm_type="dpmsolver++",
            solver_order=2,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=settings.shift,
            final_sigmas_type="zero",
        )
    flags = {flag: settings.schedule == name for name, flag in SCHEDULE_FLAGS.items()}
    if settings.sampler == "Heun":
        flags = {}  # FlowMatchHeunDiscreteScheduler has no schedule options (check_combination refuses them)
    return getattr(diffusers, SCHEDULERS[settings.sampler]).from_config(config, shift=settings.shift, **flags)


def _is_loaded_schedule(scheduler: Any, settings: GenerationSettings) -> bool:
    config = scheduler.config
    return (
        type(scheduler).__name__ == SCHEDULERS[settings.sampler]
        and config.get("shift") == settings.shift
        and all(bool(config.get(flag)) == (settings.schedule == name) for name, flag in SCHEDULE_FLAGS.items())
    )


@contextlib.contextmanager
def scheduled(pipe: Any, settings: GenerationSettings) -> Iterator[Any]:
    """The pipeline's scheduler set up for `settings` (sampler, schedule, shift) for one job, and the loaded one back
    after it. Callers hold the pipeline's lock, so concurrent users never see each other's schedule; building a
    scheduler from the loaded one's config is cheap and reloads nothing. With the model's own (Euler, Default, its
    shift) nothing is swapped."""
    original = pipe.scheduler
    if not _is_loaded_schedule(original, settings):
        pipe.scheduler = make_scheduler(original.config, settings)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = original


def skip_layer_kwargs(pipe: Any, settings: GenerationSettings) -> dict[str, Any]:
    """StableDiffusion3Pipeline's skip-layer guidance arguments for `settings` ({} when it is off): the layers (the
    model's own when none are given), the scale, and the window, scaled so that it covers the same share of the
    loop for Heun as for Euler (the pipeline compares loop iterations with steps x start)."""
    if not settings.skip_layer_guided:
        return {}
    from sd35ui.core.pipeline import model_spec

    layers = settings.skip_layers or ", ".join(map(str, model_spec(model_name(pipe)).skip_layers))
    scale = loop_length(settings) / settings.steps
    return {
        "skip_guidance_layers": [int(layer) for layer in layers.split(",")],
        "skip_layer_guidance_scale": settings.slg_scale,
        "skip_layer_guidance_start": settings.slg_start * scale,
        "skip_layer_guidance_stop": settings.slg_stop * scale,
    }


class FirstStepCache:
    """The transformer's output at the first step, shared by the cells of a sheet that start alike.

    Every denoising loop starts from the seed's noise at the first timestep (sigma 1 for SD3's schedules, whatever
    the steps, guidance scale or shift), so cells that share the seed, size, prompt, negative prompt, T5 setting and
    guidance on/off make the same first transformer call; a Steps x Guidance sheet of 16 cells makes it once, not
    16 times. The key also holds the timestep's value, so a schedule that starts elsewhere (Karras, DPM++ 2M) is
    never given another's output. Hand-written: diffusers has no hook to reuse a step's output."""

    def __init__(self) -> None:
        self._outputs: dict[tuple, Any] = {}
        self.hits = 0  # transformer calls saved

    @contextlib.contextmanager
    def around(self, pipe: Any, settings: GenerationSettings) -> Iterator[None]:
        """While the job runs: its first transformer call answered from the cache, or run and kept."""
        transformer = pipe.transformer
        if type(transformer).__name__ == "OptimizedModule":  # compiled whole: its forward is not ours to wrap
            yield
            return
        forward = transformer.forward
        own = transformer.__dict__.get("forward")  # accelerate's offload hook, when there is one
        calls = 0
        same_start = (settings.seed, settings.width, settings.height, settings.prompt, settings.negative_prompt)
        same_start += (settings.t5_prompt, is_guided(settings.guidance))

        def first_step_once(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            timestep = kwargs.get("timestep")
            if calls > 1 or timestep is None or kwargs.get("skip_layers") is not None:
                return forward(*args, **kwargs)
            key = (*same_start, float(timestep.flatten()[0]))
            if key in self._outputs:
                self.hits += 1
                return self._outputs[key]
            out = forward(*args, **kwargs)
            self._outputs[key] = out
            return out

        transformer.forward = first_step_once
        try:
            yield
        finally:
            if own is not None:
                transformer.forward = own
            else:
                del transformer.forward


def denoise(
    pipe: Any,
    embeddings: Embeddings,
    settings: GenerationSettings,
    on_step: StepCallback | None = None,
    stop: threading.Event | None = None,
    first_steps: FirstStepCache | None = None,
) -> Any:
    """Run the denoising loop and return latents (not decoded). Raises GenerationStopped when `stop` is set.
    `first_steps` (a sheet's) answers the first transformer call when another cell already made it."""
    import torch

    assert settings.seed is not None, "call settings.with_seed() first"
    total = loop_length(settings)

    def callback(_pipe: Any, i: int, _t: Any, kwargs: dict) -> dict:
        if on_step is not None:
            on_step(i + 1, total)
        if stop is not None and stop.is_set() and i + 1 < total:
            raise GenerationStopped()
        return kwargs

    if stop is not None and stop.is_set():
        raise GenerationStopped()
    guided = is_guided(settings.guidance)
    # A CPU generator gives the same noise on every device, so a seed means the same picture everywhere.
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    shared = first_steps.around(pipe, settings) if first_steps is not None else contextlib.nullcontext()
    with torch.inference_mode(), scheduled(pipe, settings), shared:
        return pipe(
            prompt_embeds=embeddings.prompt,
            negative_prompt_embeds=embeddings.negative if guided else None,
            pooled_prompt_embeds=embeddings.pooled,
            negative_pooled_prompt_embeds=embeddings.negative_pooled if guided else None,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            width=settings.width,
            height=settings.height,
            generator=generator,
            output_type="latent",
            callback_on_step_end=callback,
            **skip_layer_kwargs(pipe, settings),
        ).images


def decode(pipe: Any, latents: Any) -> list[Image.Image]:
    """Latents to PIL images, exactly as the pipeline's own output step does it."""
    import torch

    with torch.inference_mode():
        latents = (latents / pipe.vae.config.scaling_factor) + pipe.vae.config.shift_factor
        latents = latents.to(device=pipe._execution_device, dtype=pipe.vae.dtype)
        pixels = pipe.vae.decode(latents, return_dict=False)[0]
        images = pipe.image_processor.postprocess(pixels, output_type="pil")
    pipe.maybe_free_model_hooks()  # model offload: every model off the GPU, unless inside `resident_models`
    return images


@dataclass
class _Residency:
    depth: int  # `resident_models` blocks open on the pipeline
    vae_hook: Any | None  # the VAE's offload hook, unlinked from the transformer's while resident
    vae_prev: Any | None  # what it was linked to


# By pipeline, weakly (see `_pipe_locks`); changed only under the pipeline's lock.
_resident: weakref.WeakKeyDictionary[Any, _Residency] = weakref.WeakKeyDictionary()


def offloads_models(pipe: Any) -> bool:
    """Whether `pipe` runs under model CPU offload (`enable_model_cpu_offload`: accelerate's chained hooks)."""
    return bool(getattr(pipe, "_all_hooks", None))


def _offload_hook(pipe: Any, model: Any) -> Any | None:
    """accelerate's `CpuOffload` hook that `enable_model_cpu_offload` put on `model`, or None."""
    for user_hook in getattr(pipe, "_all_hooks", None) or []:
        if model is not None and user_hook.model is model:
            return user_hook.hook
    return None


def _offloading_nothing(pipe: Any) -> Callable[[], None]:
    """A stand-in for `pipe.maybe_free_model_hooks` that keeps every model where it is and does the rest of what
    diffusers' (0.42.1) does: reset the components' stateful caches."""

    def keep_models() -> None:
        for component in pipe.components.values():
            if hasattr(component, "_reset_stateful_cache"):
                component._reset_stateful_cache()

    return keep_models


@contextlib.contextmanager
def resident_models(pipe: Any) -> Iterator[None]:
    """While active, model CPU offload keeps the transformer and the VAE on the GPU between jobs; on leaving (also by
    an exception) every model is offloaded, as after a single image (`pipe.maybe_free_model_hooks()`).

    Under `enable_model_cpu_offload` each image ends by offloading every model (the pipeline's call and `decode` run
    `maybe_free_model_hooks`), and the VAE's hook offloads the transformer before decoding: ~5 GB each way per image
    for SD3.5 Medium in bf16. Inside this block `maybe_free_model_hooks` offloads nothing and the VAE's hook is
    unlinked from the transformer's, so the transformer goes to the GPU once for all the jobs; the text encoders
    still take turns with it through the hook chain (the transformer's hook offloads the last one), so encode the
    prompts first. Without offload hooks it does nothing.

    Reentrant: blocks nest (also from several threads); the outermost one to end offloads. It takes
    `pipe_lock(pipe)` to set up and to offload, so do not enter or leave it while holding that lock (not reentrant).
    A single image made on the pipeline by another thread meanwhile keeps its models too, until the block ends."""
    if not offloads_models(pipe):
        yield
        return
    with pipe_lock(pipe):
        residency = _resident.get(pipe)
        if residency is None:
            vae_hook = _offload_hook(pipe, getattr(pipe, "vae", None))
            residency = _resident[pipe] = _Residency(0, vae_hook, getattr(vae_hook, "prev_module_hook", None))
            if vae_hook is not None:
                vae_hook.prev_module_hook = None  # decoding no longer offloads the transformer
            pipe.maybe_free_model_hooks = _offloading_nothing(pipe)
        residency.depth += 1
    try:
        yield
    finally:
        with pipe_lock(pipe):
            residency.depth -= 1
            if residency.depth == 0:
                del _resident[pipe]
                if residency.vae_hook is not None:  # diffusers 0.42's maybe_free_model_hooks rebuilds them anyway
                    residency.vae_hook.prev_module_hook = residency.vae_prev
                del pipe.maybe_free_model_hooks  # the pipeline's own again
                pipe.maybe_free_model_hooks()


def out_of_memory_advice(what: str = "this image") -> str:
    return (
        f"The GPU ran out of memory making {what}. Memory has been freed; try a smaller size, fewer cells, "
        "--quant nf4, --offload model, or --t5 drop, then run again."
    )


def generate(
    pipe: Any,
    settings: GenerationSettings,
    on_step: StepCallback | None = None,
    stop: threading.Event | None = None,
) -> GenerationResult:
    """Make one image. `settings` should be validated; a missing seed is drawn here and reported in the result."""
    import torch

    from sd35ui.core.pipeline import free_memory, recipe

    settings = settings.with_seed()
    start = time.perf_counter()
    try:
        with pipe_lock(pipe):
            embeddings = embeddings_for(pipe, settings)
            encoded = time.perf_counter()
            latents = denoise(pipe, embeddings, settings, on_step, stop)
            denoised = time.perf_counter()
            image = decode(pipe, latents)[0]
            done = time.perf_counter()
    except torch.OutOfMemoryError as exc:
        pipe.maybe_free_model_hooks()
        free_memory()
        raise GenerationOutOfMemory(out_of_memory_advice()) from exc
    timings = {
        "encode": encoded - start,
        "denoise": denoised - encoded,
        "decode": done - denoised,
        "total": done - start,
    }
    return GenerationResult(image, settings, model_name(pipe), timings, recipe(pipe))
