"""SD3.5 Medium's own controls beyond shift and sampler on the real tiny pipeline: skip-layer guidance,
DPM++ 2M, schedule types, T5 on/off, size presets and prompt length. Each new setting changes the image and its off
value gives exactly today's pixels; SLG adds transformer calls only inside its window; every new setting survives a
PNG round trip; the new sheet axes (Negative S/R, Size, T5, SLG, Schedule) give the single images."""

from __future__ import annotations

import numpy as np
import pytest

import sd35ui
from sd35ui.core import generate, history, metadata, sheet, storage, tokens
from sd35ui.core.pipeline import get_pipeline, model_spec
from sd35ui.core.settings import GenerationSettings

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=64, height=64, steps=10, guidance=4.5, seed=11)
# One value per new setting that is not its default (with SLG on, so its layers and window matter).
CHANGED = {
    "sampler": "DPM++ 2M",
    "schedule": "Karras",
    "slg_scale": 2.5,
    "skip_layers": "0",
    "slg_start": 0.0,
    "slg_stop": 0.5,
    "t5_prompt": "Off",
}


@pytest.fixture(scope="module")
def pipe(tiny_options):
    return get_pipeline(tiny_options)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def calls(pipe):
    """The `skip_layers` argument of every transformer call (None for an ordinary call)."""
    seen: list = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs.get("skip_layers")), with_kwargs=True
    )
    yield seen
    hook.remove()


@pytest.fixture(scope="module")
def shapes():
    """The trained tiny model: it follows prompts, so a negative prompt or T5's part visibly changes its images.
    Loaded outside the app's one-pipeline cache, which the session's tiny-random pipeline keeps."""
    from sd35ui.core.pipeline import LoadOptions, load_pipeline

    return load_pipeline(LoadOptions(model="tiny"))


@pytest.fixture(scope="module")
def today(pipe):
    return pixels(generate.generate(pipe, BASE).image)


@pytest.mark.parametrize(
    "change",
    [
        {"sampler": "DPM++ 2M"},
        {"schedule": "Karras"},
        {"schedule": "Exponential"},
        {"schedule": "Beta"},
        {"slg_scale": 2.5},
        {"t5_prompt": "Off"},
    ],
    ids=lambda change: "-".join(map(str, change.values())),
)
def test_each_new_setting_changes_the_image_and_restores_the_loaded_scheduler(pipe, today, change):
    loaded = pipe.scheduler
    made = generate.generate(pipe, BASE.replace(**change).check_combination())
    assert pipe.scheduler is loaded
    assert np.abs(pixels(made.image) - today).mean() > 0.05, change  # the random model: small but real changes
    assert np.array_equal(pixels(generate.generate(pipe, BASE).image), today)  # nothing leaked to the next job


@pytest.mark.parametrize(
    "off",
    [{"slg_scale": 0.0, "skip_layers": "1", "slg_start": 0.3}, {"schedule": "Default"}, {"t5_prompt": "On"}],
    ids=["slg-scale-0", "default-schedule", "t5-on"],
)
def test_each_settings_off_value_gives_exactly_todays_pixels(pipe, today, off, calls):
    made = generate.generate(pipe, BASE.replace(**off))
    assert np.array_equal(pixels(made.image), today)
    assert len(calls) == BASE.steps and not any(calls)


def test_skip_layer_guidance_adds_one_call_per_step_inside_its_window_only(pipe, calls):
    settings = BASE.replace(slg_scale=2.5, slg_start=0.2, slg_stop=0.6)  # 10 steps: iterations 3, 4, 5
    made = generate.generate(pipe, settings)
    skipped = [i for i, layers in enumerate(calls) if layers is not None]
    assert len(calls) == 10 + 3 == generate.model_calls(made.settings)
    # each skip-layer call follows the ordinary (guided) call of its step, with the model's own layers
    assert skipped == [3 + 1, 4 + 2, 5 + 3]
    assert all(calls[i] == list(TINY.skip_layers) for i in skipped)
    assert generate.skip_layer_iterations(settings) == [3, 4, 5]


def test_skip_layer_guidance_needs_guidance_and_keeps_its_window_under_heun(pipe, calls):
    generate.generate(pipe, BASE.replace(slg_scale=2.5, guidance=1.0))
    assert not any(calls)  # as in diffusers: no classifier-free guidance, no skip-layer pass
    calls.clear()
    heun = BASE.replace(slg_scale=2.5, slg_start=0.2, slg_stop=0.6, sampler="Heun")
    generate.generate(pipe, heun)
    # 19 loop iterations: 0.2 x 19 < i < 0.6 x 19, the same share of the loop as for Euler
    assert sum(layers is not None for layers in calls) == len(generate.skip_layer_iterations(heun)) == 8


def test_explicit_layers_reach_the_transformer_and_missing_layers_are_refused(pipe, calls):
    generate.generate(pipe, BASE.replace(slg_scale=2.5, skip_layers="0, 1"))
    assert [layers for layers in calls if layers is not None] == [[0, 1]]
    with pytest.raises(ValueError, match="no layer 7.*0 to 1.*2 transformer layers"):
        GenerationSettings.validated(TINY, prompt="x", slg_scale=2.5, skip_layers="7, 8, 9")


def test_schedules_other_than_default_need_euler():
    with pytest.raises(ValueError, match="Euler sampler only"):
        GenerationSettings.validated(TINY, prompt="x", sampler="Heun", schedule="Karras")
    with pytest.raises(ValueError, match="start must come before the stop"):
        GenerationSettings.validated(TINY, prompt="x", slg_scale=1, slg_start=0.5, slg_stop=0.2)


def test_t5_off_is_the_encoding_with_t5s_part_zeroed_and_encodes_nothing_new(pipe):
    cache = generate.PromptCache()
    full = generate.embeddings_for(pipe, BASE, cache)
    off = generate.embeddings_for(pipe, BASE.replace(t5_prompt="Off"), cache)
    assert cache.misses == 2  # the prompt and the (empty) negative prompt, once each
    t5 = generate.max_sequence_length(pipe)
    assert not off.prompt[:, -t5:].any() and off.prompt[:, -t5:].shape[1] == t5
    assert np.array_equal(off.prompt[:, :-t5].numpy(), full.prompt[:, :-t5].numpy())  # CLIP's part unchanged
    assert full.prompt[:, -t5:].abs().sum() > 0
    assert off.pooled is full.pooled


def test_a_png_with_every_new_setting_loads_back_and_regenerates_the_same_pixels(pipe, tmp_path):
    settings = BASE.replace(**{**CHANGED, "sampler": "Euler"}).check_combination()  # Karras needs Euler
    made = generate.generate(pipe, settings)
    path = storage.save_png(made.image, metadata.result_png_info(made), tmp_path / "all.png")
    for drop_json in (False, True):  # our JSON chunk, and the A1111 text alone (as other tools keep it)
        if drop_json:
            text = metadata.format_parameters(made.settings, made.model)
            path = storage.save_png(made.image, _a1111_only(text), tmp_path / "a1111.png")
        loaded = history.load_settings(path, TINY)
        assert loaded.notes == []
        values = {k: v for k, v in loaded.values.items() if k != "randomize_seed"}
        again = GenerationSettings.validated(TINY, **values)
        assert again == made.settings
        assert np.array_equal(pixels(generate.generate(pipe, again).image), pixels(made.image))


def _a1111_only(text: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(metadata.PARAMETERS_KEY, text)
    return info


def test_a1111_keys_name_the_sampler_and_schedule():
    text = metadata.format_parameters(BASE.replace(schedule="Karras", slg_scale=2.5), "m")
    last = text.splitlines()[-1]
    assert last.startswith("Steps: 10, Sampler: Euler (flow matching), Schedule type: Karras, CFG scale: 4.5")
    assert "SLG scale: 2.5, SLG start: 0.01, SLG stop: 0.2" in last and "SLG layers" not in last


@pytest.mark.parametrize(
    "axis, values, key, expected",
    [
        ("Negative S/R", 'blurry, "", "blurry, dark"', "negative_prompt", ["blurry", "", "blurry, dark"]),
        ("T5", "On, Off", "t5_prompt", ["On", "Off"]),
        ("SLG scale", "0, 2.5", "slg_scale", [0.0, 2.5]),
        ("Schedule type", "Default, Beta", "schedule", ["Default", "Beta"]),
        ("Skip layers", '"2", "1, 2"', "skip_layers", ["2", "1, 2"]),
    ],
)
def test_new_axes_give_the_single_images(shapes, axis, values, key, expected):
    base = BASE.replace(prompt="a red circle on a blue background", negative_prompt="blurry")
    base = base.replace(slg_scale=2.5 if key == "skip_layers" else 0.0)
    spec = sheet.make_spec(base, axis, values, None, None, model=model_spec("tiny"))
    result = sheet.run_sheet(shapes, spec)
    made = sorted(result.cells, key=lambda d: d.cell.col)
    assert [getattr(d.settings, key) for d in made] == expected
    for done in made:
        assert np.array_equal(pixels(done.image), pixels(generate.generate(shapes, done.settings).image))
    assert len({pixels(d.image).tobytes() for d in made}) == len(made)  # each value makes its own picture


def test_a_size_axis_takes_sizes_and_aspect_ratios_and_draws_each_in_the_middle_of_its_box(pipe):
    spec = sheet.make_spec(BASE.replace(steps=2), "Size", "64x64, 16:9, 9:16", "Seed", "1, 2", model=TINY)
    assert spec.x.values == ("64x64", "80x48", "48x80")  # the tiny model's own presets at 64x64's pixels
    assert sheet.x_outer(spec)  # a size costs more to switch than a seed: sizes run in the outer loop
    order = [(c.col, c.row) for c in sheet.plan_sheet(spec)]
    assert order == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    result = sheet.run_sheet(pipe, spec)
    assert {d.image.size for d in result.cells} == {(64, 64), (80, 48), (48, 80)}
    assert sheet.cell_box(spec) == (80, 80)
    picture = result.image()
    assert picture.width > 3 * 80


def test_a_size_axis_outside_the_model_is_refused_with_the_valid_range():
    with pytest.raises(ValueError, match=r"X axis \(Size\), 100x64: Width must be a multiple of 16"):
        sheet.make_spec(BASE, "Size", "100x64", None, None, model=TINY)
    with pytest.raises(ValueError, match=r"1000x64: Size \(width\) is 1000, outside the valid range 32 to 256"):
        sheet.make_spec(BASE, "Size", "1000x64", None, None, model=TINY)
    with pytest.raises(ValueError, match="cannot read 'wide'"):
        sheet.make_spec(BASE, "Size", "wide", None, None, model=TINY)


def test_a_sampler_by_schedule_sheet_refuses_the_combinations_that_do_not_go_together():
    with pytest.raises(ValueError, match=r"Cell Sampler: Heun, Schedule type: Karras: .*Euler sampler only"):
        sheet.check_sheet(sheet.make_spec(BASE, "Sampler", "Euler, Heun", "Schedule", "Default, Karras", model=TINY))


def test_size_presets_are_multiples_of_16_near_the_models_pixels():
    sd35 = sd35ui.core.settings.SD35_MEDIUM.size_presets()
    assert sd35["1:1"] == (1024, 1024) and sd35["16:9"] == (1360, 768) and sd35["9:16"] == (768, 1360)
    assert sd35["21:9"] == (1440, 624)  # SD3.5's widest side is 1440
    for w, h in sd35.values():
        assert w % 16 == h % 16 == 0 and 256 <= min(w, h) and max(w, h) <= 1440
        assert 0.55 < w * h / 1024**2 < 1.1


def test_token_counts_name_the_words_cut(pipe):
    short = tokens.count_tokens(pipe, "a red fox")
    assert short.warning() is None and short.clip < short.clip_max
    long_prompt = "a red fox " * 30 + "purple"
    counted = tokens.count_tokens(pipe, long_prompt)
    assert counted.clip > counted.clip_max == pipe.tokenizer_max_length
    warning = counted.warning()
    assert warning is not None and "purple" in warning and "CLIP reads only the first" in warning
    assert counted.t5 is not None and counted.t5_max == generate.max_sequence_length(pipe)


def test_the_library_and_cli_take_the_new_settings(pipe, cli, tmp_path):
    result = sd35ui.generate(pipe, prompt="a red fox", steps=4, width=64, height=64, seed=11, slg_scale=2.5)
    assert result.settings.slg_scale == 2.5
    out = tmp_path / "cli.png"
    args = ["--prompt", "a red fox", "--steps", "4", "--width", "64", "--height", "64", "--seed", "11"]
    args += ["--schedule", "beta", "--slg-scale", "2", "--skip-layers", "1", "--t5-prompt", "off", "--out", str(out)]
    done = cli("generate", *args)
    assert done.returncode == 0, done.stderr
    read = metadata.read_png_metadata(str(out))["settings"]
    assert (read.schedule, read.slg_scale, read.skip_layers, read.t5_prompt) == ("Beta", 2.0, "1", "Off")
