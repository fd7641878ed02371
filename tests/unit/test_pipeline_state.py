"""State the core keeps per pipeline (its lock, cached prompt embeddings, tokenizer copies) belongs to that pipeline
object: a pipeline made later at a freed one's address never gets the old model's state (it did while the state was
keyed by `id(pipe)`), and the state is released with the pipeline."""

from __future__ import annotations

import gc
import weakref

import pytest

from sd35ui.core import generate


class Pipe:
    """Just what `PromptCache` asks of a pipeline: `encode_prompt` and an execution device; its "embedding" of any
    text is the model's name, so the test sees whose embeddings it is handed."""

    _execution_device = "cpu"

    def __init__(self, model: str) -> None:
        self.model = model

    def encode_prompt(self, **_: object) -> tuple[str, None, str, None]:
        return self.model, None, self.model, None


def test_a_pipeline_at_a_freed_ones_address_gets_its_own_embeddings_and_lock():
    cache = generate.PromptCache()
    for _ in range(200):  # CPython hands a freed address to a later object of that size, most tries at once
        old = Pipe("old model")
        address, old_lock = id(old), generate.pipe_lock(old)
        assert cache.text(old, "a red fox")[0] == "old model"
        del old
        gc.collect()
        made = [Pipe("new model") for _ in range(500)]
        new = next((pipe for pipe in made if id(pipe) == address), None)
        if new is None:
            continue
        assert cache.text(new, "a red fox")[0] == "new model"
        assert generate.pipe_lock(new) is not old_lock
        return
    pytest.fail("no new object was ever placed at a freed one's address")


def test_the_state_goes_with_the_pipeline():
    pipe = Pipe("m")
    generate.pipe_lock(pipe)
    generate.pipe_number(pipe)
    gone = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert gone() is None  # nothing the core keeps holds the pipeline alive
    assert all(p is not None for p in list(generate._pipe_locks.keys()))
