"""Several devices, one pipeline each: a contact sheet's cells spread over every GPU in the box (or CPU workers).

`parse_devices` reads `--devices all|0,1|cpu,cpu` and `load_workers` loads one pipeline per device;
`sd35ui.core.workers` runs jobs on them (`run_sheet_on` spreads a sheet's cells, `WorkerPool` gives a single image
to whichever is free).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sd35ui.core.pipeline import LoadOptions, load_pipeline

DEVICES_HELP = "all (every CUDA GPU, or the CPU without one), GPU numbers like 0,1, or CPU workers like cpu,cpu"


def cuda_count() -> int:
    """CUDA GPUs PyTorch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_devices(text: str, cuda_count: int) -> list[str]:
    """The devices `text` names, one pipeline each: "all" (every CUDA GPU, or ["cpu"] without CUDA), GPU numbers
    ("0,1" or "cuda:0,cuda:1", each once and below `cuda_count`) or CPU workers ("cpu,cpu"). GPUs and CPU workers do
    not mix: a CPU cell takes a hundred GPU cells' time and is computed in another precision. Raises ValueError
    saying how to write it."""
    wanted = str(text or "").strip().lower()
    if wanted == "all":
        return [f"cuda:{i}" for i in range(cuda_count)] or ["cpu"]
    items = [item.strip() for item in wanted.split(",")]
    if not wanted or not all(items):
        raise ValueError(
            f"Devices: {text!r} names no device (or has an empty one between commas). Use {DEVICES_HELP}."
        )
    present = f"GPUs {', '.join(map(str, range(cuda_count)))}" if cuda_count else "no CUDA GPU"
    devices = []
    for item in items:
        if item == "cpu":
            devices.append("cpu")
            continue
        number = item.removeprefix("cuda:") if item != "cuda" else "0"
        if not number.isdigit():
            raise ValueError(f"Devices: cannot read {item!r} in {text!r}. Use {DEVICES_HELP}.")
        if int(number) >= cuda_count:
            fix = "; use cpu (or cpu,cpu for two CPU workers)" if not cuda_count else ", or all for every one"
            raise ValueError(
                f"Devices: there is no GPU {int(number)}: PyTorch sees {present}. Name one of those{fix}."
            )
        devices.append(f"cuda:{int(number)}")
    gpus = [d for d in devices if d != "cpu"]
    if gpus and len(gpus) < len(devices):
        raise ValueError(
            f"Devices: {text!r} mixes GPUs and CPU workers; use GPUs only (e.g. 0,1) or CPU workers only."
        )
    repeated = sorted({d for d in gpus if gpus.count(d) > 1})
    if repeated:
        raise ValueError(
            f"Devices: {', '.join(repeated)} named twice; a GPU runs one pipeline here, so list each GPU once."
        )
    return devices


def load_workers(options: LoadOptions, devices: Sequence[str]) -> list[Any]:
    """One pipeline per device, each loaded with `load_pipeline` (not `get_pipeline`, whose cache holds one
    pipeline per `LoadOptions`: two CPU workers have equal options and need two pipelines). An "auto" dtype is
    chosen per device (bfloat16 on CUDA, float32 on a CPU)."""
    if not devices:
        raise ValueError(f"Devices: none given. Use {DEVICES_HELP}.")
    pipes = []
    for device in devices:
        worker = dataclasses.replace(options, device=device)
        if worker.dtype == "auto":  # LoadOptions.resolve() picks bfloat16 only for the plain device "cuda"
            worker = dataclasses.replace(worker, dtype="bfloat16" if device.startswith("cuda") else "float32")
        pipes.append(load_pipeline(worker))
    return pipes
