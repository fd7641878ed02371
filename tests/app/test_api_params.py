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


def test_a_call_written_before_shift_existed_still_works_and_shift_is_a_named_parameter(client):
    import numpy as np
    from PIL import Image

    old = ("a red circle", "", 3, 4.5, 64, 64, 21, False)  # /generate's eight values before shift was added
    path_old, seed, _ = client.predict(*old, api_name="/generate")
    path_default, _, _ = client.predict(*old, 3.0, api_name="/generate")
    path_named, _, info = client.predict(*old, shift=1.0, api_name="/generate")
    read = [np.asarray(Image.open(p), dtype=np.int16) for p in (path_old, path_default, path_named)]
    assert seed == 21 and np.array_equal(read[0], read[1])
    assert np.abs(read[2] - read[0]).mean() > 1
    assert Image.open(path_named).info and "Shift: 1" in Image.open(path_named).info["parameters"]


@pytest.mark.parametrize(
    ("api", "data"),
    [
        ("generate", ["a red circle", "", 2, 4.5, 64, 64, 5, False]),
        ("contact_sheet", ["a red circle", "", "Steps", "1, 2", "None", "", 2, 4.5, 64, 64, 5, False, 0, True, False]),
    ],
)
def test_raw_http_calls_written_before_shift_existed_still_complete(app_server, api, data):
    """curl sends every value itself; Gradio refuses fewer values than inputs unless the app fills the new ones."""
    app, _ = app_server
    body = json.dumps({"data": data}).encode()
    request = urllib.request.Request(
        f"{app.local_url}gradio_api/call/{api}", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{app.local_url}gradio_api/call/{api}/{event_id}", timeout=120) as response:
        events = response.read().decode()
    assert "event: complete" in events and "event: error" not in events, events[-500:]


def test_sampler_is_a_named_parameter_and_a_sheet_axis(client):
    import numpy as np
    from PIL import Image

    base = dict(prompt="a red circle", negative_prompt="", steps=3, guidance=4.5, width=64, height=64, seed=21)
    euler, _, _ = client.predict(**base, randomize_seed=False, api_name="/generate")
    heun, _, _ = client.predict(**base, randomize_seed=False, sampler="Heun", api_name="/generate")
    assert "Sampler: Heun" in Image.open(heun).info["parameters"]
    assert np.abs(np.asarray(Image.open(heun), np.int16) - np.asarray(Image.open(euler), np.int16)).mean() > 1
    _, cells, status, *_ = client.predict(
        "a red circle", "", "Sampler", "Euler, Heun", "None", "", 2, 4.5, 64, 64, 5, api_name="/contact_sheet"
    )
    assert [c["caption"] for c in cells] == ["Sampler: Euler", "Sampler: Heun"] and "2 cells" in status
    with pytest.raises(Exception, match="not in the list of choices"):  # Gradio's dropdown names them
        client.predict(**base, randomize_seed=False, sampler="DDIM", api_name="/generate")


def test_new_controls_are_named_parameters_and_the_info_line_warns_of_what_is_cut(client):
    import numpy as np
    from PIL import Image

    base = dict(prompt="a red circle", negative_prompt="", steps=4, guidance=4.5, width=64, height=64, seed=21)
    plain, _, _ = client.predict(**base, randomize_seed=False, api_name="/generate")
    every = dict(schedule="Karras", slg_scale=2.5, skip_layers="1", slg_start=0.0, slg_stop=0.9, t5_prompt="Off")
    path, _, info = client.predict(**base, randomize_seed=False, **every, api_name="/generate")
    text = Image.open(path).info["parameters"]
    assert "Schedule type: Karras" in text and "SLG scale: 2.5, SLG layers: 1" in text and "T5: Off" in text
    assert "Euler Karras" in info and "skip-layer guidance 2.5" in info and "T5 off" in info
    changed = np.abs(np.asarray(Image.open(path), np.int16) - np.asarray(Image.open(plain), np.int16)).mean()
    assert changed > 0.05
    _, _, unguided = client.predict(
        **{**base, "guidance": 1.0}, randomize_seed=False, slg_scale=2.5, api_name="/generate"
    )
    assert "did not run: it works only with guidance above 1" in unguided
    long_prompt = "a red circle on a blue background " * 12 + "with a purple moon"
    _, _, cut = client.predict(**{**base, "prompt": long_prompt}, randomize_seed=False, api_name="/generate")
    assert "Prompt too long: CLIP reads only the first" in cut and "moon" in cut
    with pytest.raises(Exception, match="Euler sampler only"):
        client.predict(**base, randomize_seed=False, sampler="Heun", schedule="Beta", api_name="/generate")
    with pytest.raises(Exception, match="no layer 7; use whole numbers from 0 to 1"):
        client.predict(**base, randomize_seed=False, slg_scale=1, skip_layers="7, 8, 9", api_name="/generate")
