"""Speed options for a loaded pipeline: torch.compile, text encoders kept off the GPU, the VAE's memory layout, and
the attention kernel. Each one is measured by bench/bench.py before it is recommended (see PERF.md).

Call `apply_speed_options(pipe, ...)` once, right after `load_pipeline`; the choices are recorded on the pipeline as
`pipe.sd35ui_speed`. Options that cannot work together, or on this machine, raise `ValueError` saying what to do.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sd35ui.core.env import on_zerogpu  # the one ZeroGPU check; compile is refused there

Compile = Literal["none", "regional", "full"]
Attention = Literal["default", "cudnn", "flash", "efficient", "math"]
COMPILE_CHOICES: tuple[str, ...] = ("none", "regional", "full")
ATTENTION_CHOICES: tuple[str, ...] = ("default", "cudnn", "flash", "efficient", "math")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


@dataclass(frozen=True)
class SpeedOptions:
    """What `apply_speed_options` did to a pipeline. The defaults change nothing."""

    # regional: each transformer block compiled (one graph per block kind, reused by all 24 blocks; short compile);
    # full: the whole transformer as one graph (longest compile). Off by default: compiling costs tens of seconds
    # at start-up and pays back only over many images (bench/bench.py reports after how many).
    compile: Compile = "none"
    # T5-XXL and the CLIPs (11 GB in bf16) stay in CPU memory and stream to the GPU layer by layer, only when a
    # prompt is not in the prompt cache: the GPU holds the transformer, the VAE and activations only.
    offload_text_encoders: bool = False
    vae_channels_last: bool = False  # the VAE's convolutions in NHWC layout
    attention: Attention = "default"  # PyTorch SDPA kernel tried first; "default" lets PyTorch choose

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_compile() -> Compile:
    """The compile setting when the user asks for none: off. A compile (about a minute on an H200 for the whole
    transformer) pays back only after many images, and on ZeroGPU every call would pay it again."""
    return "none"


def module_bytes(module: Any) -> int:
    """Bytes held by a module's parameters and buffers as stored: a 4-bit weight counts half a byte per value plus
    its block scales."""
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t.device.type == "meta":
            continue
        total += t.numel() * t.element_size()
        absmax = getattr(getattr(t, "quant_state", None), "absmax", None)  # bitsandbytes' per-block scales
        if absmax is not None:
            total += absmax.numel() * absmax.element_size()
    return total


def _device(pipe: Any) -> Any:
    return pipe.transformer.device if getattr(pipe, "transformer", None) is not None else pipe.device


def _is_4bit(module: Any) -> bool:
    return bool(getattr(module, "is_loaded_in_4bit", False) or getattr(module, "is_quantized", False))


def _has_offload_hooks(pipe: Any) -> bool:
    """True when diffusers' model or sequential CPU offload is active on the pipeline."""
    if getattr(pipe, "_all_hooks", None):
        return True
    transformer = getattr(pipe, "transformer", None)
    return transformer is not None and any(hasattr(m, "_hf_hook") for m in transformer.modules())


def check_speed_options(pipe: Any, options: SpeedOptions) -> None:
    """Refuse options that cannot work on this pipeline or machine, before anything is changed."""
    if options.compile not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {options.compile!r}.")
    if options.attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}, got {options.attention!r}.")
    if getattr(pipe, "sd35ui_speed", None) is not None:
        raise ValueError(
            "Speed options were already applied to this pipeline (compiled code cannot be undone). Load a fresh "
            "pipeline to change them."
        )
    cuda = _device(pipe).type == "cuda"
    offload = getattr(getattr(pipe, "sd35ui_options", None), "offload", "none")
    if options.compile != "none" and on_zerogpu():
        raise ValueError(
            "torch.compile is off on Spaces ZeroGPU: each call runs on a freshly attached GPU and would compile "
            "again. Use --compile none there."
        )
    if options.compile != "none" and offload == "sequential":
        raise ValueError(
            "torch.compile cannot trace a transformer under sequential CPU offload (its weights move layer by "
            "layer). Use --offload model or --offload none with --compile."
        )
    if options.offload_text_encoders:
        if not cuda:
            raise ValueError(
                "Offloading the text encoders keeps them in CPU memory while the transformer runs on a GPU; this "
                "pipeline is not on a CUDA GPU. Leave --offload-text-encoders off."
            )
        if offload != "none" or _has_offload_hooks(pipe):
            raise ValueError(
                f"--offload {offload} already moves the text encoders off the GPU. Use either it or "
                "--offload-text-encoders, not both."
            )
        quantized = [name for name in TEXT_ENCODERS if _is_4bit(getattr(pipe, name, None))]
        if quantized:
            raise ValueError(
                f"{', '.join(quantized)} is 4-bit, which cannot stream layer by layer (bitsandbytes: 'Blockwise "
                "quantization only supports 16/32-bit floats'). Use --t5 full with --offload-text-encoders, or "
                "--offload model with --t5 4bit."
            )
    if options.attention in ("cudnn", "flash", "efficient") and not cuda:
        raise ValueError(
            f"The {options.attention} attention kernel needs a CUDA GPU. Use --attention default on this machine."
        )


def apply_speed_options(
    pipe: Any,
    compile: Compile = "none",
    offload_text_encoders: bool = False,
    vae_channels_last: bool = False,
    attention: Attention = "default",
) -> SpeedOptions:
    """Apply speed options to a loaded pipeline, once, and record them as `pipe.sd35ui_speed`.

    Compilation happens lazily: the first image at each size pays for it."""
    options = SpeedOptions(compile, offload_text_encoders, vae_channels_last, attention)
    check_speed_options(pipe, options)
    if options.attention != "default":
        use_attention_kernel(pipe.transformer, options.attention)
    if options.vae_channels_last:
        set_vae_channels_last(pipe, True)
    if options.offload_text_encoders:
        offload_text_encoders_to_cpu(pipe)
    if options.compile != "none":
        compile_transformer(pipe.transformer, options.compile)
    pipe.sd35ui_speed = options
    return options


def compile_transformer(transformer: Any, mode: Compile, **compile_kwargs: Any) -> None:
    """torch.compile the transformer in place. "regional" compiles each repeated block (diffusers'
    `compile_repeated_blocks` where the model declares its blocks; SD3 in diffusers 0.42 does not, so each
    `JointTransformerBlock` is compiled itself: with the same code and weights as inputs, they share compiled graphs,
    one per block kind). "full" compiles the whole forward."""
    compile_kwargs.setdefault("fullgraph", True)
    if mode == "regional":
        if getattr(type(transformer), "_repeated_blocks", None):
            transformer.compile_repeated_blocks(**compile_kwargs)
        else:
            for block in transformer.transformer_blocks:
                block.compile(**compile_kwargs)
    elif mode == "full":
        transformer.compile(**compile_kwargs)
    elif mode != "none":
        raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {mode!r}.")


def use_attention_kernel(transformer: Any, kernel: Attention) -> None:
    """Make `kernel` PyTorch's first choice of SDPA kernel inside the transformer (falling back to the others where
    it cannot run a shape), by wrapping the transformer's forward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    if kernel == "default":
        return
    order = [backends[kernel]] + [b for name, b in backends.items() if name != kernel]
    forward = transformer.forward

    @functools.wraps(forward)
    def forward_with_kernel(*args: Any, **kwargs: Any) -> Any:
        with sdpa_kernel(order, set_priority=True):
            return forward(*args, **kwargs)

    transformer.forward = forward_with_kernel


def set_vae_channels_last(pipe: Any, channels_last: bool = True) -> None:
    import torch

    layout = torch.channels_last if channels_last else torch.contiguous_format
    pipe.vae.to(memory_format=layout)


def offload_text_encoders_to_cpu(pipe: Any, device: Any = None) -> int:
    """Keep the text encoders' weights in CPU memory and stream them to `device` (default: the transformer's) one
    layer at a time while they encode; return the bytes of GPU memory this frees. Encoding a new prompt then moves
    about 11 GB over PCIe (SD3.5 Medium in bf16); prompts from the cache cost nothing."""
    import torch
    from accelerate import cpu_offload

    device = torch.device(device) if device is not None else _device(pipe)
    freed = 0
    for name in TEXT_ENCODERS:
        encoder = getattr(pipe, name, None)
        if encoder is None:
            continue
        if encoder.device.type != "cpu":
            freed += module_bytes(encoder)
            encoder.to("cpu")
        # The same call diffusers' enable_sequential_cpu_offload makes for each model, for the text encoders only.
        cpu_offload(encoder, execution_device=device, offload_buffers=len(encoder._parameters) > 0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return freed
