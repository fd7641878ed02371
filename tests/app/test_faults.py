"""Faults inside the pipeline, survived by a live app on the tiny model: out of memory or an exception at a real
step of the real pipeline (a forward hook on the text encoder, a transformer block or the VAE decoder) is reported
in one message, with advice for out of memory and no traceback, and the next request works."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from app_support import ARGS
from gradio_client.exceptions import AppError
from PIL import Image

from sd35ui.core import metadata
from sd35ui.core.pipeline import get_pipeline


@contextmanager
def fault_at(module: torch.nn.Module, error: BaseException, times: int = 1):
    """Raise `error` from `module`'s forward the next `times` times it runs."""
    calls = []

    def hook(_module, _inputs, _output):
        calls.append(1)
        if len(calls) <= times:
            raise error

    handle = module.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def injection_points(pipe):
    return {
        "text encoder": pipe.text_encoder,
        "transformer block": pipe.transformer.transformer_blocks[1],
        "VAE decoder": pipe.vae.decoder,
    }


@pytest.mark.parametrize("where", ["text encoder", "transformer block", "VAE decoder"])
def test_out_of_memory_is_reported_with_advice_and_the_next_request_works(client, tiny_options, where):
    pipe = get_pipeline(tiny_options)  # the app's own pipeline object
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    prompt = f"a green square for OOM in the {where}"  # new text, so the text encoder runs
    with fault_at(injection_points(pipe)[where], oom) as calls:
        with pytest.raises(AppError) as info:
            client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")
        assert calls, "the fault was injected at a real step"
        message = str(info.value)
        assert "ran out of memory" in message and "smaller size" in message and "--quant nf4" in message
        assert "Traceback" not in message
        path, _, _ = client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")
    with Image.open(path) as image:
        assert metadata.read_png_metadata(image)["settings"].prompt == prompt


@pytest.mark.parametrize("where", ["text encoder", "transformer block", "VAE decoder"])
def test_an_exception_inside_the_pipeline_never_kills_the_server(client, tiny_options, where):
    pipe = get_pipeline(tiny_options)
    prompt = f"a blue star for a fault in the {where}"
    with fault_at(injection_points(pipe)[where], RuntimeError("injected fault")):
        with pytest.raises(AppError, match="Generation failed: RuntimeError: injected fault") as info:
            client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")
        assert "still running" in str(info.value) and "Traceback" not in str(info.value)
        assert client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")[0].endswith(".png")
