"""One declaration per setting: the parameter table (`PARAMS`) and the load flags (`LOAD_FLAGS`) against every
place that uses them: the settings object, validation, the CLI, the PNG metadata, the sheet axes, LoadOptions."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from sd35ui import cli
from sd35ui.core import metadata, options, sheet
from sd35ui.core.pipeline import LoadOptions
from sd35ui.core.settings import PARAM, PARAMS, RANGES, SD35_MEDIUM, GenerationSettings

ROOT = Path(__file__).resolve().parents[2]


def test_settings_have_one_field_per_param_in_table_order_with_the_tables_defaults():
    fields = dataclasses.fields(GenerationSettings)
    assert [f.name for f in fields] == [p.name for p in PARAMS]
    defaults = GenerationSettings(prompt="x")
    for param in PARAMS[1:]:
        assert getattr(defaults, param.name) == param.default_for(SD35_MEDIUM), param.name


def test_validation_takes_each_params_range_and_names_it():
    for param in PARAMS:
        if param.range is None or param.kind == "size":
            continue
        with pytest.raises(ValueError, match=param.name) as error:
            GenerationSettings.validated(prompt="x", **{param.name: param.range.maximum + 1})
        assert param.range.describe() in str(error.value)
        at_max = GenerationSettings.validated(prompt="x", **{param.name: param.range.maximum})
        assert getattr(at_max, param.name) == param.range.maximum
    assert set(RANGES) == {p.name for p in PARAMS if p.range is not None}


def test_settings_left_out_take_the_models_own_defaults():
    tiny_like = dataclasses.replace(
        SD35_MEDIUM, name="small", default_size=64, min_size=32, max_size=256, default_steps=8
    )
    settings = GenerationSettings.validated(tiny_like, prompt="x")
    assert (settings.steps, settings.width, settings.height, settings.seed) == (8, 64, 64, None)
    assert settings.guidance == PARAM["guidance"].range.default


@pytest.mark.parametrize("command", ["generate", "sheet"])
def test_every_param_has_its_cli_flag_and_the_flag_reaches_the_settings(command, monkeypatch):
    parser = cli.build_parser()
    argv = [command, "--out", "x.png", "--model", "tiny"]
    values = {"prompt": "a red circle", "negative_prompt": "blur", "steps": 7, "guidance": 2.5, "width": 48}
    values.update(height=80, seed=1234, shift=2.5, sampler="Euler", schedule="Karras", slg_scale=2.5)
    values.update(skip_layers="1", slg_start=0.05, slg_stop=0.5, t5_prompt="Off")
    assert set(values) == set(PARAM), "a new param needs a value in this test"
    for name, value in values.items():
        argv += [PARAM[name].cli, str(value)]
    args = parser.parse_args(argv)
    _, settings = cli._settings(args)
    assert settings.to_dict() == values


def test_metadata_writes_every_a1111_key_of_the_table_and_reads_it_back():
    settings = GenerationSettings(
        prompt="p", negative_prompt="n", steps=7, guidance=2.5, width=48, height=80, seed=9, schedule="Beta"
    )
    settings = settings.replace(slg_scale=2.8, skip_layers="7, 8, 9", slg_start=0.02, slg_stop=0.3, t5_prompt="Off")
    text = metadata.format_parameters(settings, "tiny")
    last = text.splitlines()[-1]
    for param in PARAMS:
        if param.a1111:
            assert f"{param.a1111}: " in last, param.name
    assert last.startswith("Steps: 7, Sampler: ")  # A1111's own order, which other tools expect
    assert 'SLG layers: "7, 8, 9"' in last  # quoted: it holds the separator
    assert metadata.settings_from_parameters(text) == settings


def test_metadata_leaves_out_skip_layer_guidance_and_t5_while_they_are_off():
    text = metadata.format_parameters(GenerationSettings(prompt="p", seed=1, slg_start=0.1), "m")
    assert "SLG" not in text and "T5" not in text and "Schedule" not in text
    assert metadata.settings_from_parameters(text) == GenerationSettings(prompt="p", seed=1)


def test_sheet_axes_are_the_params_with_an_axis_plus_prompt_search_replace():
    on_axes = [p for p in PARAMS if p.axis]
    assert [k for k in sheet.AXIS_KINDS if k not in ("prompt", "negative", "size")] == [p.name for p in on_axes]
    for param in on_axes:
        for name in param.axis:
            assert sheet.axis_kind(name).key == param.name
        if param.choices:
            assert sheet.parse_axis(param.axis[0], ", ".join(c.lower() for c in param.choices)).values == param.choices
            continue
        if param.kind == "layers":
            assert sheet.parse_axis(param.axis[0], '"9 8 7", 3').values == ("7, 8, 9", "3")
            continue
        too_big = str(int(param.range.maximum) + 1) if param.range.integer else f"{param.range.maximum + 1:g}"
        with pytest.raises(ValueError, match=param.range.describe()):
            sheet.parse_axis(param.axis[0], too_big)


# --- load options: one flag per field ----------------------------------------------------------------------------

# A value other than the default for each LoadOptions field, as typed on the command line.
OTHER_VALUES = {
    "model": ["--model", "tiny-random"],
    "quant": ["--quant", "nf4"],
    "t5": ["--t5", "drop"],
    "offload": ["--offload", "model"],
    "dtype": ["--dtype", "bfloat16"],
    "allow_cpu": ["--allow-cpu"],
    "device": ["--device", "cpu"],
    "compile": ["--compile", "regional"],
    "offload_text_encoders": ["--offload-text-encoders"],
}


def test_every_load_option_has_exactly_one_flag():
    names = [f.name for f in dataclasses.fields(LoadOptions)]
    assert sorted(options.LOAD_FLAGS) == sorted(names) == sorted(OTHER_VALUES)
    flags = [flag for flag, _ in options.LOAD_FLAGS.values()]
    assert len(set(flags)) == len(flags)


@pytest.mark.parametrize("field", sorted(OTHER_VALUES))
def test_each_load_flag_reaches_load_options_and_changes_only_its_field(field):
    """The bug this guards: --compile and --offload-text-encoders were parsed but never reached LoadOptions."""
    parser = cli.build_parser()
    base = ["generate", "--prompt", "x", "--out", "x.png"]
    default = options.load_options(parser.parse_args(base))
    assert default == LoadOptions()
    changed = options.load_options(parser.parse_args(base + OTHER_VALUES[field]))
    differing = [
        f.name for f in dataclasses.fields(LoadOptions) if getattr(changed, f.name) != getattr(default, f.name)
    ]
    assert differing == [field]


def test_demo_takes_the_same_load_flags():
    import demo

    args = demo.parse_args(["--compile", "full", "--offload-text-encoders", "--device", "cpu"])
    loaded = options.load_options(args)
    assert (loaded.compile, loaded.offload_text_encoders, loaded.device) == ("full", True, "cpu")


# --- small functions -----------------------------------------------------------------------------------------------

MAX_FUNCTION_LINES = 80


def test_no_function_in_the_package_is_longer_than_80_lines():
    long = []
    for path in sorted((ROOT / "sd35ui").rglob("*.py")) + [ROOT / "demo.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + "; ".join(long)


# --- the recipe and version in saved PNGs --------------------------------------------------------------------------


def _png(tmp_path, info) -> str:
    from PIL import Image

    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return str(path)


def test_png_records_the_recipe_and_version_and_reads_them_back(tmp_path):
    import sd35ui

    settings = GenerationSettings(prompt="p", steps=7, width=48, height=80, seed=9)
    recipe = {"model": "tiny", "quant": "nf4", "t5": "drop", "offload": "model", "compile": "regional"}
    recipe.update(offload_text_encoders=False, dtype="bfloat16", device="cuda")
    read = metadata.read_png_metadata(_png(tmp_path, metadata.png_info(settings, "tiny", recipe=recipe)))
    assert (read["settings"], read["recipe"], read["version"]) == (settings, recipe, sd35ui.__version__)


def test_png_metadata_of_sd35ui_0_1_still_loads(tmp_path):
    """0.1 wrote settings and model only: no recipe, no version."""
    import json

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    old = {"settings": {"prompt": "p", "negative_prompt": "", "steps": 7, "guidance": 4.5, "width": 64}}
    old["settings"].update(height=64, seed=3)
    info.add_text("sd35ui", json.dumps({**old, "model": "tiny"}))
    read = metadata.read_png_metadata(_png(tmp_path, info))
    assert read["settings"] == GenerationSettings(**old["settings"])
    assert (read["model"], read["recipe"], read["version"]) == ("tiny", {}, None)
