"""Command-line options shared by `demo.py` and `python -m sd35ui`: how to load the model. Cheap to import.

Every `LoadOptions` field has exactly one flag, declared once in `LOAD_FLAGS` (tests/unit/test_params.py checks
that no field is left without one), and `load_options` copies every one of them into `LoadOptions`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from sd35ui.core.pipeline import DEFAULT_MODEL, LoadOptions

# field of LoadOptions -> (flag, argparse keyword arguments). Defaults come from LoadOptions itself.
LOAD_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "model": (
        "--model",
        dict(
            help=f"hub id, local folder, 'tiny' (built-in demo model) or 'auto': {DEFAULT_MODEL} where CUDA is "
            "available, the built-in tiny model otherwise (default: auto)"
        ),
    ),
    "quant": (
        "--quant",
        dict(
            choices=["auto", "nf4", "none"],
            help="4-bit NF4 quantization of the transformer (needs CUDA); auto: nf4 on GPUs under 24 GB "
            "(default: auto)",
        ),
    ),
    "t5": (
        "--t5",
        dict(
            choices=["full", "4bit", "drop"],
            help="the T5-XXL text encoder: full, 4-bit, or dropped to save memory at some cost in prompt adherence",
        ),
    ),
    "offload": (
        "--offload",
        dict(
            choices=["auto", "model", "sequential", "none"],
            help="CPU offload: model (one model on the GPU at a time), sequential (least memory, slowest), none",
        ),
    ),
    "dtype": (
        "--dtype",
        dict(choices=["auto", "bfloat16", "float16", "float32"], help="auto: bfloat16 on CUDA, float32 on a CPU"),
    ),
    "allow_cpu": ("--allow-cpu", dict(action="store_true", help="run a full-size model on the CPU (very slow)")),
    "device": (
        "--device",
        dict(help="where the model runs: auto (cuda when PyTorch sees a GPU, else cpu), cpu, cuda or cuda:N"),
    ),
    "compile": (
        "--compile",
        dict(
            choices=["none", "regional", "full"],
            help="torch.compile the transformer: regional compiles each block (short compile), full the whole "
            "model; pays back only over many images (default: none)",
        ),
    ),
    "offload_text_encoders": (
        "--offload-text-encoders",
        dict(
            action="store_true",
            help="keep T5 and the CLIPs in CPU memory, streamed to the GPU only for a new prompt (12-16 GB GPUs)",
        ),
    ),
}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    defaults = LoadOptions()
    for field in dataclasses.fields(LoadOptions):
        flag, kwargs = LOAD_FLAGS[field.name]
        if kwargs.get("action") != "store_true":
            kwargs = {"default": getattr(defaults, field.name), **kwargs}
        group.add_argument(flag, dest=field.name, **kwargs)


def add_worker_arguments(parser: argparse.ArgumentParser, what: str = "jobs") -> None:
    """`--devices` and `--ray`: where the pipelines run (`start_workers` reads them)."""
    group = parser.add_argument_group("workers")
    group.add_argument(
        "--devices",
        default=None,
        help=f"one pipeline per device, {what} spread over them: all (every GPU), GPU numbers like 0,1, or CPU "
        "workers like cpu,cpu (default: the one --device); with --ray, the cluster's GPUs (all: one per GPU, or one "
        "per CPU slot without GPUs)",
    )
    group.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="run the pipelines as Ray actors: local (start Ray on this machine) or a cluster's address such as "
        "ray://head:10001 or auto (needs: pip install -r requirements-ray.txt)",
    )


def start_workers(options: LoadOptions, devices: str | None, ray: str | None) -> list[Any] | None:
    """The workers `--devices` and `--ray` ask for, loaded (a model that cannot load fails here, with
    `PipelineError` or `ValueError`); None when neither is given: the one pipeline of `options`."""
    if ray:
        from sd35ui.core.ray_workers import ray_workers

        return ray_workers(options, ray, devices or "all")
    if devices is None:
        return None
    from sd35ui.core.devices import cuda_count, load_workers, parse_devices
    from sd35ui.core.workers import LocalWorker

    wanted = parse_devices(devices, cuda_count())
    pipes = load_workers(options, wanted)
    if wanted.count("cpu") > 1:  # CPU workers share the cores: torch's default (all of them) each would spin-wait
        import os

        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // wanted.count("cpu")))
    return [LocalWorker(pipe, name=f"{device}#{k + 1}") for k, (pipe, device) in enumerate(zip(pipes, wanted))]


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The `LoadOptions` the flags ask for: every field, from its one flag."""
    return LoadOptions(**{field.name: getattr(args, field.name) for field in dataclasses.fields(LoadOptions)})
