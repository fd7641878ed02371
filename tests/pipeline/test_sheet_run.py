"""Running and saving contact sheets on the tiny random SD3 pipeline (real classes, CPU, 64x64, few steps)."""

from __future__ import annotations

import json
import os
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sd35ui.core import generate, metadata, sheet  # noqa: E402
from sd35ui.core.pipeline import LoadOptions, get_pipeline, model_spec  # noqa: E402
from sd35ui.core.settings import GenerationSettings  # noqa: E402

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=64, height=64, steps=3, guidance=4.5, seed=11)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


@pytest.fixture(scope="module")
def pipe():
    return get_pipeline(LoadOptions(model="tiny-random"))


@pytest.fixture
def encoder_calls(pipe, monkeypatch):
    """How many times the first CLIP text encoder really ran (it runs for every prompt encoding)."""
    calls = []
    forward = pipe.text_encoder.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.text_encoder, "forward", counting)
    return calls


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def small_spec(**options):
    return sheet.make_spec(BASE, "Guidance", "3, 6", "Steps", "2, 3", model=TINY, **options)


def test_cells_equal_single_generations(pipe):
    progress = []
    shown = []
    result = sheet.run_sheet(
        pipe,
        small_spec(),
        on_progress=lambda *p: progress.append(p),
        on_cell=shown.append,
        cache=generate.PromptCache(),
    )
    assert result.complete and not result.stopped and result.model == "tiny-random"
    assert [d.cell.index for d in shown] == [0, 1, 2, 3] and shown == result.cells
    assert progress[:2] == [(0, 4, 1, 2), (0, 4, 2, 2)] and progress[-1] == (3, 4, 3, 3)
    for done in result.cells:
        single = generate.generate(pipe, done.settings)
        assert done.settings == single.settings
        assert np.array_equal(pixels(done.image), pixels(single.image)), done.cell
        assert done.seconds > 0 and set(done.result.timings) == {"encode", "denoise", "decode", "total"}
    assert result.cell_at(1, 0).settings == BASE.replace(guidance=3.0, steps=3)
    assert not np.array_equal(pixels(result.cells[0].image), pixels(result.cells[1].image))


def test_each_text_is_encoded_once_per_sheet(pipe, encoder_calls):
    """Two prompts, each with and without guidance: three texts encoded (the two prompts and the negative prompt,
    once for both; the cells without guidance reuse their prompt's encoding), not four (prompt, negative) pairs."""
    spec = sheet.make_spec(BASE, "Prompt S/R", "fox, cat", "Guidance", "1, 3, 4.5, 6", model=TINY)
    keys = {(c.settings.prompt, c.settings.negative_prompt, c.settings.guidance > 1) for c in sheet.plan_sheet(spec)}
    assert spec.n_cells == 8 and len(keys) == 4
    cache = generate.PromptCache()
    result = sheet.run_sheet(pipe, spec, cache=cache)
    assert cache.misses == 3
    in_sheet = len(encoder_calls)
    encoder_calls.clear()
    for text in {BASE.prompt, BASE.prompt.replace("fox", "cat"), BASE.negative_prompt}:
        generate.encode_text(pipe, text)
    assert in_sheet == len(encoder_calls) > 0
    encoder_calls.clear()
    for key in keys:  # what it took before: one encode_prompt per (prompt, negative, guided)
        generate.encode(pipe, *key)
    assert len(encoder_calls) == 2 * in_sheet  # 6 texts (two guided pairs, two prompts alone) against 3
    for done in result.cells:  # and every cell is still the single image
        assert np.array_equal(pixels(done.image), pixels(generate.generate(pipe, done.settings).image))


def test_guard_refuses_before_generating(pipe, encoder_calls):
    steps = []
    too_big = sheet.make_spec(BASE, "Seed", "1-9", "Steps", "1-8", model=TINY, max_cells=72)  # past the default
    with pytest.raises(ValueError, match="72 cells"):
        sheet.run_sheet(pipe, too_big, on_progress=lambda *p: steps.append(p), cache=generate.PromptCache())
    with pytest.raises(ValueError, match="megapixels"):
        sheet.run_sheet(pipe, small_spec(), max_pixels=3 * 64 * 64, cache=generate.PromptCache())
    assert encoder_calls == [] and steps == []


def test_stop_between_cells_keeps_finished_cells(pipe):
    stop = threading.Event()

    def on_cell(done):
        if done.cell.index == 1:
            stop.set()

    result = sheet.run_sheet(pipe, small_spec(), stop=stop, on_cell=on_cell)
    assert result.stopped and not result.complete
    assert [d.cell.index for d in result.cells] == [0, 1]
    image = result.image()  # the unfinished sheet still draws, with grey cells
    assert image.size[0] > 2 * 192


def test_stop_within_a_step(pipe):
    stop = threading.Event()
    seen = []

    def on_progress(cell, cells, step, steps):
        seen.append((cell, step))
        if cell == 2 and step == 1:
            stop.set()

    result = sheet.run_sheet(pipe, small_spec(), on_progress=on_progress, stop=stop)
    assert result.stopped and [d.cell.index for d in result.cells] == [0, 1]
    assert seen[-1] == (2, 1)  # cell 2 stopped after its first step, not at its end


def test_out_of_memory_keeps_finished_cells(pipe):
    import torch

    def on_progress(cell, cells, step, steps):
        if cell == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(generate.GenerationOutOfMemory, match="cell 2 of 4 of the sheet") as error:
        sheet.run_sheet(pipe, small_spec(), on_progress=on_progress)
    assert isinstance(error.value, sheet.SheetOutOfMemory)
    assert [d.cell.index for d in error.value.result.cells] == [0]


def test_random_seed_is_fixed_for_the_sheet(pipe):
    spec = sheet.SheetSpec(BASE.replace(seed=None), sheet.parse_axis("steps", "1, 2"))
    result = sheet.run_sheet(pipe, spec)
    assert result.spec.base.seed is not None
    assert {d.settings.seed for d in result.cells} == {result.spec.base.seed}


def test_saved_sheet_describes_its_axes(pipe, tmp_path):
    result = sheet.run_sheet(pipe, small_spec(show_times=True, margin=4))
    sheet_path, cell_paths, zip_path = sheet.save_sheet(result, tmp_path)
    assert sheet_path.parent.parent == tmp_path and len(cell_paths) == 4
    with Image.open(sheet_path) as image:
        image.load()
        assert image.size == result.image().size
        parameters = image.info[metadata.PARAMETERS_KEY]
        description = json.loads(image.info[sheet.SHEET_JSON_KEY])
    assert 'Script: X/Y/Z plot, X Type: Guidance, X Values: "3, 6", Y Type: Steps, Y Values: "2, 3"' in parameters
    assert parameters.startswith("a red fox\nSteps: 2, ")  # the first cell's settings, as A1111 writes its grids
    read = metadata.read_png_metadata(str(sheet_path))
    assert read["extra"]["X Type"] == "Guidance" and read["extra"]["Y Values"] == "2, 3"
    assert description["x"] == {"type": "Guidance", "values": [3.0, 6.0], "labels": ["Guidance: 3", "Guidance: 6"]}
    assert description["y"]["values"] == [2, 3] and description["fixed"]["seed"] == 11
    assert "guidance" not in description["fixed"] and description["options"]["margin"] == 4
    assert [c["settings"]["steps"] for c in description["cells"]] == [2, 2, 3, 3]
    assert "batched" not in description  # the batched sheet path is gone
    for done, path in zip(result.cells, cell_paths, strict=True):
        assert metadata.read_png_metadata(str(path))["settings"] == done.settings
        with Image.open(path) as cell:
            assert np.array_equal(pixels(cell.convert("RGB")), pixels(done.image))
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == sorted([*(p.name for p in [sheet_path, *cell_paths]), "index.html"])
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_sheet_saved_with_the_old_batched_key_still_loads(pipe, tmp_path):
    """Sheets saved before the batched path was removed carry `"batched": false` in their description."""
    from PIL import PngImagePlugin

    from sd35ui.core import explore

    result = sheet.run_sheet(pipe, small_spec())
    sheet_path, _, _ = sheet.save_sheet(result, tmp_path)
    with Image.open(sheet_path) as image:
        image.load()
        description = json.loads(image.info[sheet.SHEET_JSON_KEY])
        old = PngImagePlugin.PngInfo()
        for key, value in image.info.items():
            if isinstance(value, str) and key != sheet.SHEET_JSON_KEY:
                old.add_text(key, value)
        old.add_text(sheet.SHEET_JSON_KEY, json.dumps({**description, "batched": False}))
        image.save(sheet_path, pnginfo=old)
    loaded = explore.load_sheet(sheet_path)
    assert loaded.spec == result.spec and len(loaded.cells) == 4
    assert np.array_equal(pixels(loaded.image()), pixels(result.image()))


def test_cells_that_start_alike_share_the_first_transformer_call(pipe):
    """Steps x Guidance with one seed: every guided cell starts from the same noise at the same first timestep, so
    the first call runs once per (prompt, guided?) and the cells are still exactly the single images."""
    spec = sheet.make_spec(BASE, "Steps", "2, 3, 4", "Guidance", "1, 3, 6", model=TINY)
    calls: list[int] = []  # the transformer's real work: its patch embedding runs once per computed call
    hook = pipe.transformer.pos_embed.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = sheet.run_sheet(pipe, spec, cache=generate.PromptCache())
    finally:
        hook.remove()
    every = sum(generate.model_calls(c.settings) for c in sheet.plan_sheet(spec))
    # 9 cells, two kinds of start (guidance 1 is unguided: another batch of inputs): 9 - 2 first calls saved
    assert result.first_steps_shared == 7 and len(calls) == every - 7
    for done in result.cells:
        assert np.array_equal(pixels(done.image), pixels(generate.generate(pipe, done.settings).image)), done.cell
    assert "forward" not in pipe.transformer.__dict__  # the wrapper is gone after the sheet
