"""The sampler setting (Euler, SD3's own, or Heun) on the real tiny pipeline: Euler changes nothing, Heun makes
2n-1 transformer calls for n steps and a different image, progress counts those calls, and it works as a sheet axis
and in saved PNGs."""

from __future__ import annotations

import numpy as np
import pytest

from sd35ui.core import generate, history, metadata, sheet, storage
from sd35ui.core.pipeline import get_pipeline, model_spec
from sd35ui.core.settings import GenerationSettings

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=64, height=64, steps=4, guidance=4.5, seed=11)


@pytest.fixture(scope="module")
def pipe(tiny_options):
    return get_pipeline(tiny_options)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def calls(pipe):
    counted: list[int] = []
    hook = pipe.transformer.register_forward_hook(lambda *_: counted.append(1))
    yield counted
    hook.remove()


def test_euler_is_the_loaded_scheduler_and_heun_calls_the_model_twice_a_step(pipe, calls):
    loaded = pipe.scheduler
    with generate.scheduled(pipe, BASE) as scheduler:
        assert scheduler is loaded and BASE.sampler == "Euler"
    euler = generate.generate(pipe, BASE)
    assert len(calls) == 4
    calls.clear()
    steps: list[tuple[int, int]] = []
    heun = generate.generate(pipe, BASE.replace(sampler="Heun"), on_step=lambda i, n: steps.append((i, n)))
    assert len(calls) == 2 * 4 - 1 == generate.model_calls(heun.settings)
    assert steps[-1] == (7, 7) and all(i <= n for i, n in steps)  # progress counts model calls, never past 100%
    assert pipe.scheduler is loaded
    assert np.abs(pixels(heun.image) - pixels(euler.image)).mean() > 1


def test_a_sampler_axis_gives_the_single_images(pipe):
    spec = sheet.make_spec(BASE, "Sampler", "Euler, Heun", "Steps", "2, 4", model=TINY)
    result = sheet.run_sheet(pipe, spec)
    assert {(d.settings.sampler, d.settings.steps) for d in result.cells} == {
        ("Euler", 2),
        ("Heun", 2),
        ("Euler", 4),
        ("Heun", 4),
    }
    for done in result.cells:
        single = generate.generate(pipe, done.settings)
        assert np.array_equal(pixels(done.image), pixels(single.image)), done.cell


def test_a_heun_png_loads_back_and_makes_the_same_pixels(pipe, tmp_path):
    made = generate.generate(pipe, BASE.replace(sampler="Heun", shift=2.0))
    path = storage.save_png(made.image, metadata.result_png_info(made), tmp_path / "heun.png")
    assert "Sampler: Heun (flow matching)" in metadata.format_parameters(made.settings, made.model)
    loaded = history.load_settings(path, TINY)
    assert (loaded.values["sampler"], loaded.values["shift"], loaded.notes) == ("Heun", 2.0, [])
    again = GenerationSettings.validated(TINY, **{k: v for k, v in loaded.values.items() if k != "randomize_seed"})
    assert np.array_equal(pixels(generate.generate(pipe, again).image), pixels(made.image))
