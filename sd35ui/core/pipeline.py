"""The one shared SD3.5 pipeline: what to load (`LoadOptions`), the checks before loading, and a cached getter.

UI, CLI and API all call `get_pipeline(options)`. Nothing is loaded at import time. Each failure a user can hit
(missing package, no CUDA, gated model, no network, bad combination of options) raises `PipelineError` with a
message that says what to do.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from sd35ui.core.settings import SD35_MEDIUM, ModelSpec

DEFAULT_MODEL = SD35_MEDIUM.name
TINY_MODELS = ("tiny", "tiny-random")
FULLSIZE_PREFIX = "fullsize-random"  # the real SD3.5 Medium architecture with random weights (sd35ui.models.fullsize)
NF4_MIN_GIB_FOR_FULL = 24  # below this much GPU memory, "auto" picks nf4 + model offload (model card recipe)

Quant = Literal["auto", "nf4", "none"]
T5Mode = Literal["full", "4bit", "drop"]
Offload = Literal["auto", "model", "sequential", "none"]


class PipelineError(RuntimeError):
    """A model cannot be loaded; the message says why and how to fix it."""


class MissingDependencyError(PipelineError):
    pass


class NoCudaError(PipelineError):
    pass


class GatedModelError(PipelineError):
    pass


class ModelNotFoundError(PipelineError):
    pass


class OptionsError(PipelineError):
    pass


@dataclass(frozen=True)
class LoadOptions:
    """How to load the pipeline. "auto" values are resolved by `resolve()` for the machine at hand."""

    model: str = "auto"  # hub id, local folder, "tiny" (built-in) or "auto" (SD3.5 Medium on CUDA, else tiny)
    quant: Quant = "auto"  # nf4: 4-bit transformer (and T5 unless t5="full"); auto: nf4 on GPUs under 24 GiB
    t5: T5Mode = "full"  # the T5-XXL text encoder: full precision, 4-bit, or dropped (zeros; less prompt adherence)
    offload: Offload = "auto"  # model: one model on the GPU at a time; sequential: layer by layer (slowest)
    dtype: str = "auto"  # bfloat16 on CUDA, float32 on CPU
    allow_cpu: bool = False  # run a full-size model on the CPU (very slow; refused unless asked for)
    device: str = "auto"
    compile: str = "none"  # torch.compile of the transformer: none, regional (each block) or full (sd35ui.core.speed)
    offload_text_encoders: bool = False  # keep T5 and the CLIPs in CPU memory, streamed to the GPU for new prompts

    @property
    def is_fullsize_random(self) -> bool:
        return self.model.startswith(FULLSIZE_PREFIX)

    @property
    def is_tiny(self) -> bool:
        return self.model in TINY_MODELS

    def resolve(self) -> LoadOptions:
        """Replace every "auto" with a concrete choice for this machine."""
        cuda = cuda_available()
        model = self.model if self.model != "auto" else (DEFAULT_MODEL if cuda else "tiny")
        device = self.device if self.device != "auto" else ("cuda" if cuda else "cpu")
        tiny = model in TINY_MODELS
        small_gpu = cuda and gpu_memory_gib() < NF4_MIN_GIB_FOR_FULL
        quant = self.quant if self.quant != "auto" else ("nf4" if small_gpu and not tiny else "none")
        offload = self.offload if self.offload != "auto" else ("model" if small_gpu and not tiny else "none")
        dtype = self.dtype if self.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
        return replace(self, model=model, device=device, quant=quant, offload=offload, dtype=dtype)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def gpu_memory_gib() -> float:
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**30


def nf4_supported(device: str) -> bool:
    """Whether the app loads an NF4 transformer on `device`: CUDA only, as diffusers' bitsandbytes quantizer insists
    (bitsandbytes itself can quantize on the CPU; tests lift both checks to exercise the NF4 loading code here)."""
    return device.startswith("cuda")


def model_spec(model: str) -> ModelSpec:
    """The size limits of a model: the tiny model's own, SD3.5 Medium's for everything else."""
    if model in TINY_MODELS:
        return tiny_spec(model)
    return SD35_MEDIUM


def tiny_spec(model: str = "tiny") -> ModelSpec:
    """Size limits of the built-in tiny models, from the model's own info file (trained at 64 px; larger sizes run,
    with unknown quality)."""
    from sd35ui.models.tiny import TINY_LAYERS, TINY_SIZE, TINY_SKIP_LAYERS, tiny_model_info

    info = tiny_model_info(model)
    return ModelSpec(
        name=model,
        default_size=int(info.get("default_size", TINY_SIZE)),
        max_size=int(info.get("max_size", 256)),
        min_size=int(info.get("min_size", 32)),
        default_steps=int(info.get("default_steps", 40)),
        examples=tuple(info.get("example_prompts", ("a red circle on a blue background",))),
        # the trained model is sharp by 10 steps: show where steps and guidance still make a difference
        sheet_axes=tuple(info.get("sheet_axes", ("Guidance", "1, 3, 4.5, 7", "Steps", "2, 5, 10, 20"))),
        transformer_layers=int(info.get("transformer_layers", TINY_LAYERS)),
        skip_layers=tuple(int(layer) for layer in info.get("skip_layers", TINY_SKIP_LAYERS)),
    )


def model_banner(options: LoadOptions) -> str | None:
    """A warning for the page and the log when the model is not SD3.5 on a GPU, else None."""
    options = options.resolve()
    if options.is_tiny:
        from sd35ui.models.tiny import tiny_banner

        return tiny_banner(options.model)
    if options.is_fullsize_random:
        return "SD3.5 Medium's architecture with random weights: images are noise; for timing and memory only"
    if not options.device.startswith("cuda"):
        return f"running {options.model} on the CPU (--allow-cpu): one image takes many minutes"
    return None


def require(module: str, pip_name: str | None = None, why: str = "") -> None:
    if importlib.util.find_spec(module) is None:
        pip_name = pip_name or module
        raise MissingDependencyError(
            f"The Python package '{pip_name}' is not installed{why}. Install it with: pip install {pip_name} "
            "(or pip install -r requirements.txt for the pinned set)."
        )


def check_options(options: LoadOptions) -> None:
    """Refuse combinations that cannot work, before any download or allocation. `options` must be resolved."""
    for module, pip_name in (("torch", "torch==2.13.0"), ("diffusers", None), ("transformers", None)):
        require(module, pip_name)
    require("accelerate", why=" (diffusers needs it to load large models and to offload)")
    if not options.is_tiny and not options.is_fullsize_random and _looks_local(options.model):
        check_model_folder(options)  # first: a mistyped path says so, not "no GPU" or another option's problem
    if options.t5 == "4bit" or options.quant == "nf4":
        require("bitsandbytes", why=" (needed for 4-bit NF4 quantization)")
    if options.quant == "nf4" and options.offload == "sequential":
        raise OptionsError(
            "NF4 quantization cannot be combined with sequential CPU offload (bitsandbytes fails with "
            "'Blockwise quantization only supports 16/32-bit floats'). Use --offload model with --quant nf4, "
            "or --quant none with --offload sequential."
        )
    cuda = options.device.startswith("cuda")
    if options.device.startswith("cuda") and not cuda_available():
        raise NoCudaError(
            "CUDA was requested but PyTorch sees no CUDA GPU. Check `nvidia-smi`, install the CUDA build of torch "
            "(pip install torch==2.13.0 on Linux), or run on the CPU with the built-in tiny model (--model tiny)."
        )
    if options.quant == "nf4" and not nf4_supported(options.device):
        raise NoCudaError(
            "NF4 (4-bit) quantization of the transformer needs a CUDA GPU: bitsandbytes refuses to quantize it on "
            "the CPU. Use --quant none on this machine, or run on a machine with an NVIDIA GPU."
        )
    if options.offload != "none" and not cuda:
        raise NoCudaError(
            f"CPU offload ({options.offload}) moves models to a GPU as they are needed, and this machine has no "
            "CUDA GPU. Use --offload none."
        )
    if not options.is_tiny and not cuda and not options.allow_cpu:
        raise NoCudaError(
            f"No CUDA GPU found: {options.model} needs a GPU (one image takes many minutes on a CPU). Run on an "
            "NVIDIA GPU, use the built-in tiny demo model (--model tiny), or pass --allow-cpu to insist."
        )
    if options.is_fullsize_random:
        from sd35ui.models.fullsize import SHAPES

        shape = options.model.removeprefix(FULLSIZE_PREFIX).lstrip("-") or "full"
        if shape not in SHAPES:
            raise ModelNotFoundError(
                f"Unknown random model {options.model!r}: use {FULLSIZE_PREFIX}[-{'|-'.join(SHAPES)}]."
            )
        return


def check_model_folder(options: LoadOptions) -> None:
    """Refuse a local model folder that is missing, or lacks model_index.json or a component folder it lists (a
    partial download or copy), naming what is missing."""
    folder = Path(options.model).expanduser()
    written_by = (
        f"as written by StableDiffusion3Pipeline.save_pretrained or `hf download {DEFAULT_MODEL} --local-dir DIR`"
    )
    if not folder.is_dir():
        problem = "it is a file, not a folder" if folder.exists() else "the folder does not exist"
        raise ModelNotFoundError(
            f"No diffusers pipeline found at {options.model!r}: {problem} (a model folder holds model_index.json "
            f"and a folder per component). Check the path, pass a hub id such as {DEFAULT_MODEL}, or use the "
            "built-in tiny demo model (--model tiny)."
        )
    if not (folder / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"No diffusers pipeline found at {options.model!r}: the folder must hold model_index.json ({written_by}). "
            f"Check the path, or pass a hub id such as {DEFAULT_MODEL}."
        )
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelNotFoundError(
            f"{folder / 'model_index.json'} cannot be read ({exc}); download or save the model again ({written_by})."
        ) from None
    if not isinstance(index, dict):
        raise ModelNotFoundError(f"{folder / 'model_index.json'} is not a diffusers model index ({written_by}).")
    # Each component the index names with a [library, class] pair lives in a folder of that name.
    components = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and all(v)]
    not_loaded = {"text_encoder_3", "tokenizer_3"} if options.t5 == "drop" else set()
    for name in components:
        if name not in not_loaded and not (folder / name).is_dir():
            needed = ", ".join(f"{c}/" for c in components)
            raise ModelNotFoundError(
                f"{folder} has no {name}/ folder; a diffusers SD3 model folder needs model_index.json, {needed} "
                f"({written_by}). Copy or download the model again."
            )


def _looks_local(model: str) -> bool:
    """A local folder rather than a hub id (`owner/name`): an existing folder, a path from /, ., .. or ~, or any
    name with other than one '/' (or with the OS's own separator)."""
    return (
        model.startswith((".", "/", "~"))
        or os.path.isdir(model)
        or model.count("/") != 1
        or (os.sep != "/" and os.sep in model)
    )


def _hub_error(exc: BaseException, model: str) -> PipelineError | None:
    """Translate a hub failure into advice, or None when `exc` is not one."""
    from huggingface_hub import errors as hub

    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    for e in chain:
        if isinstance(e, hub.GatedRepoError) or "gated" in str(e).lower():
            return GatedModelError(
                f"{model} is a gated model. Accept its licence at https://huggingface.co/{model} while logged in, "
                "create a read token at https://huggingface.co/settings/tokens, and set it before starting: "
                "export HF_TOKEN=hf_... (or run `hf auth login`)."
            )
        if isinstance(e, hub.RepositoryNotFoundError):
            return ModelNotFoundError(
                f"Model {model!r} was not found on the Hugging Face Hub (or your token cannot see it). Check the "
                f"id, e.g. {DEFAULT_MODEL}, or pass a local folder."
            )
        if isinstance(e, (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled)) or "offline" in str(e).lower():
            return ModelNotFoundError(
                f"Could not download {model!r}: no network (or HF_HUB_OFFLINE=1) and it is not in the local cache "
                f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}). Connect to the internet once to download "
                "it, pass a local folder with --model PATH, or use the built-in tiny model (--model tiny)."
            )
    return None


def free_memory() -> None:
    """Return freed tensors to the system (and to the CUDA driver), e.g. around loading or after an OOM."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_pipeline(options: LoadOptions) -> Any:
    """Load a `StableDiffusion3Pipeline` as `options` say. Prefer `get_pipeline`, which loads once and caches."""
    options = options.resolve()
    check_options(options)
    import torch

    dtype = getattr(torch, options.dtype)
    if options.is_fullsize_random:
        from sd35ui.models.fullsize import build_pipeline

        shape = options.model.removeprefix(FULLSIZE_PREFIX).lstrip("-") or "full"
        pipe = build_pipeline(shape, device=options.device, dtype=dtype)
        pipe.sd35ui_options = options
        return _apply_speed(pipe, options)
    path = options.model
    if options.is_tiny:
        from sd35ui.models.tiny import tiny_model_path

        path = str(tiny_model_path(options.model))
    elif _looks_local(path):
        path = os.path.expanduser(path)  # diffusers would take "~/models/sd35" for a hub id
    free_memory()
    try:
        pipe = _from_pretrained(path, options, dtype)
    except PipelineError:
        raise
    except torch.OutOfMemoryError as exc:
        free_memory()
        raise PipelineError(
            f"Out of GPU memory while loading {options.model}. Use --quant nf4 --offload model (about 8 GB), or "
            "--t5 drop to leave out the largest text encoder."
        ) from exc
    except Exception as exc:
        translated = _hub_error(exc, options.model)
        if translated is not None:
            raise translated from exc
        raise
    pipe.set_progress_bar_config(disable=True)
    if options.is_tiny:  # read as many T5 tokens as the built-in model was trained with (SD3.5: 256)
        from sd35ui.models.tiny import tiny_model_info

        pipe.sd35ui_max_sequence_length = int(tiny_model_info(options.model).get("max_sequence_length", 256))
    _place(pipe, options)
    free_memory()
    pipe.sd35ui_options = options  # what was actually loaded, for metadata and the banner
    return _apply_speed(pipe, options)


def _from_pretrained(path: str, options: LoadOptions, dtype: Any) -> Any:
    """The pipeline's components from `path`, the transformer in NF4 and T5 in 4 bits or left out as asked."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True}  # safetensors only: never unpickle weights
    if options.quant == "nf4":
        from diffusers import BitsAndBytesConfig as DiffusersBnb

        kwargs["transformer"] = SD3Transformer2DModel.from_pretrained(
            path,
            subfolder="transformer",
            quantization_config=DiffusersBnb(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            ),
            dtype=dtype,
            use_safetensors=True,
        )
    if options.t5 == "drop":
        kwargs.update(text_encoder_3=None, tokenizer_3=None)
    elif options.t5 == "4bit":
        from transformers import BitsAndBytesConfig, T5EncoderModel

        kwargs["text_encoder_3"] = T5EncoderModel.from_pretrained(
            path,
            subfolder="text_encoder_3",
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            ),
            dtype=dtype,
            use_safetensors=True,
        )
    return StableDiffusion3Pipeline.from_pretrained(path, **kwargs)


def _place(pipe: Any, options: LoadOptions) -> None:
    """Put the pipeline's models where `options` say: CPU offload hooks, or the device."""
    if options.offload == "model":
        pipe.enable_model_cpu_offload()
    elif options.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    elif options.quant == "none" and options.t5 != "4bit" and not options.offload_text_encoders:
        pipe.to(options.device)
    else:  # quantized modules are placed by bitsandbytes; move the rest
        names = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
        for name in names[:2] if options.offload_text_encoders else names:  # sd35ui.core.speed streams the encoders
            module = getattr(pipe, name, None)
            if module is not None and not getattr(module, "is_loaded_in_4bit", False):
                module.to(options.device)


def _apply_speed(pipe: Any, options: LoadOptions) -> Any:
    if options.compile != "none" or options.offload_text_encoders:
        from sd35ui.core.speed import apply_speed_options

        try:
            apply_speed_options(pipe, compile=options.compile, offload_text_encoders=options.offload_text_encoders)
        except ValueError as exc:
            raise OptionsError(str(exc)) from exc
    return pipe


def recipe(pipe: Any) -> dict[str, Any]:
    """How `pipe` was loaded, read off the pipeline itself where it can be (so it is what is in effect, not what was
    asked for): the recipe every saved image records in its `sd35ui` JSON chunk."""
    options = getattr(pipe, "sd35ui_options", None)
    speed = getattr(pipe, "sd35ui_speed", None)
    transformer = getattr(pipe, "transformer", None)
    t5 = getattr(pipe, "text_encoder_3", None)
    device = options.device if options is not None else str(getattr(transformer, "device", "cpu"))
    return {
        "model": options.model if options is not None else str(getattr(pipe, "name_or_path", "unknown")),
        "quant": "nf4" if getattr(transformer, "is_loaded_in_4bit", False) else "none",
        "t5": "drop" if t5 is None else ("4bit" if getattr(t5, "is_loaded_in_4bit", False) else "full"),
        "offload": options.offload if options is not None else "none",
        "compile": getattr(speed, "compile", "none"),
        "offload_text_encoders": bool(getattr(speed, "offload_text_encoders", False)),
        "dtype": str(getattr(transformer, "dtype", "")).removeprefix("torch."),
        "device": device.split(":")[0],  # the kind (cuda, cpu), not which one
    }


_cache: dict[LoadOptions, Any] = {}
_lock = threading.Lock()


def get_pipeline(options: LoadOptions | None = None) -> Any:
    """The pipeline for `options`, loaded on first use and reused after. Loading another configuration frees the
    previous one first: one GPU holds one pipeline."""
    options = (options or LoadOptions()).resolve()
    with _lock:
        if options not in _cache:
            _cache.clear()
            free_memory()
            _cache[options] = load_pipeline(options)
        return _cache[options]


def is_loaded(options: LoadOptions | None = None) -> bool:
    return (options or LoadOptions()).resolve() in _cache
