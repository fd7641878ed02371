"""Where the app runs: a Hugging Face Space, a ZeroGPU Space. Pure checks of the environment; imports nothing heavy.

In core because loading (`sd35ui.core.speed` refuses torch.compile on ZeroGPU) and the app (`sd35ui.app.zerogpu`) both
ask.
"""

from __future__ import annotations

import os


def on_space() -> bool:
    """True inside a Hugging Face Space (which sets SPACE_ID to "owner/name")."""
    return bool(os.environ.get("SPACE_ID"))


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space with the `spaces` package installed. There CUDA exists only inside `gpu()`
    functions, and torch.compile must not be used (each call may land on another GPU slice).

    Call it before the pipeline is loaded: on ZeroGPU it imports `spaces`, which must patch torch before anything
    touches CUDA (then `.to("cuda")` at start-up is deferred to the first `gpu()` call)."""
    if not on_space():
        return False
    try:
        from spaces.config import Config
    except ImportError:
        return False
    return bool(Config.zero_gpu)
