"""Command-line options shared by `demo.py` and `python -m sd35ui`: how to load the model. Cheap to import."""

from __future__ import annotations

import argparse

from sd35ui.core.pipeline import DEFAULT_MODEL, LoadOptions


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="auto",
        help=f"hub id, local folder, 'tiny' (built-in demo model) or 'auto': {DEFAULT_MODEL} where CUDA is "
        "available, the built-in tiny model otherwise (default: auto)",
    )
    group.add_argument(
        "--quant",
        choices=["auto", "nf4", "none"],
        default="auto",
        help="4-bit NF4 quantization of the transformer (needs CUDA); auto: nf4 on GPUs under 24 GB (default: auto)",
    )
    group.add_argument(
        "--t5",
        choices=["full", "4bit", "drop"],
        default="full",
        help="the T5-XXL text encoder: full, 4-bit, or dropped to save memory at some cost in prompt adherence",
    )
    group.add_argument(
        "--offload",
        choices=["auto", "model", "sequential", "none"],
        default="auto",
        help="CPU offload: model (one model on the GPU at a time), sequential (least memory, slowest), none",
    )
    group.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto")
    group.add_argument("--allow-cpu", action="store_true", help="run a full-size model on the CPU (very slow)")
    group.add_argument(
        "--compile",
        choices=["none", "regional", "full"],
        default="none",
        help="torch.compile the transformer: regional compiles each block (short compile), full the whole model; "
        "pays back only over many images (default: none)",
    )
    group.add_argument(
        "--offload-text-encoders",
        action="store_true",
        help="keep T5 and the CLIPs in CPU memory, streamed to the GPU only for a new prompt (12-16 GB GPUs)",
    )


def load_options(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(
        model=args.model,
        quant=args.quant,
        t5=args.t5,
        offload=args.offload,
        dtype=args.dtype,
        allow_cpu=args.allow_cpu,
    )
