"""The live app's API against the parameter table: the names, order, labels, defaults and ranges users see in "Use
via API" (/gradio_api/info) come from `PARAMS`, and so do the handlers' docs and the ZeroGPU durations."""

from __future__ import annotations

import json
import urllib.request

import pytest

from sd35ui.app import zerogpu
from sd35ui.core.pipeline import model_spec
from sd35ui.core.settings import GENERATE_KEYS, PARAM, PARAMS
from sd35ui.core.sheet import SHEET_KEYS


@pytest.fixture(scope="module")
def api_info(app_server):
    app, _ = app_server
    with urllib.request.urlopen(app.local_url + "gradio_api/info", timeout=30) as response:
        return json.loads(response.read())["named_endpoints"]


def _by_name(endpoint: dict) -> dict[str, dict]:
    return {p["parameter_name"]: p for p in endpoint["parameters"]}


@pytest.mark.parametrize(("endpoint", "keys"), [("/generate", GENERATE_KEYS), ("/contact_sheet", SHEET_KEYS)])
def test_api_takes_the_tables_settings_by_name_in_order(api_info, endpoint, keys, tiny_options):
    names = [p["parameter_name"] for p in api_info[endpoint]["parameters"]]
    assert names == list(keys)
    spec = model_spec(tiny_options.model)
    shown = _by_name(api_info[endpoint])
    for param in PARAMS:
        if param.name not in shown:
            continue
        assert shown[param.name]["label"].startswith(param.label), param.name  # the sheet's says what -1 does
        if param.kind in ("number", "size"):
            rng = param.range_for(spec)
            assert shown[param.name]["parameter_default"] == param.default_for(spec), param.name
            low, high = (f"{v:g}" if not rng.integer else str(int(v)) for v in (rng.minimum, rng.maximum))
            description = shown[param.name]["type"]["description"].replace(".0 ", " ")
            assert low in description and high in description, (param.name, description)


def test_generate_docs_describe_every_setting_from_the_table(app_server):
    app, _ = app_server
    doc = next(block.fn.__doc__ for block in app.fns.values() if block.api_name == "generate")
    for param in PARAMS:
        assert f"{param.name}: {param.help}" in doc, param.name
    assert "randomize_seed:" in doc


def test_zerogpu_durations_read_the_handlers_arguments_by_the_tables_names():
    few = dict(prompt="p", steps=4, width=256, height=256)
    many = dict(prompt="p", steps=50, width=1440, height=1440)
    positional = [many.get(key, "") for key in GENERATE_KEYS[:6]]
    assert (
        zerogpu.generate_duration(**few) < zerogpu.generate_duration(**many) == zerogpu.generate_duration(*positional)
    )
    sheet = dict(prompt="p", negative_prompt="", x_axis="Steps", x_values="10, 20", y_axis="None", y_values="")
    sheet.update(steps=40, guidance=4.5, width=1024, height=1024)
    bigger = {**sheet, "x_values": "10, 20, 30, 40, 50"}
    assert zerogpu.sheet_duration(**sheet) < zerogpu.sheet_duration(**bigger)
    assert zerogpu.sheet_duration(*(bigger.get(k) for k in SHEET_KEYS[:10])) == zerogpu.sheet_duration(**bigger)
    assert PARAM["steps"].range.maximum == 50  # the figures above use the table's own limits
