"""Hostile input through the real app (gradio_client -> HTTP -> queue -> handlers -> pipeline): every parameter of
every public endpoint gets huge, empty, control-character, NaN/inf/negative/huge, wrongly typed and absurd values.
Each call must end in a valid result or a clear error (never a traceback, never Gradio's generic "has raised an
exception"), and the server must keep serving.

Valid combinations that would be slow on a CPU (many steps, large images, big sheets) are filtered out before they
are sent, using the app's own validation, so the suite stays well under a minute and a half on 2 cores."""

from __future__ import annotations

import http.client
import json
import math
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from sd35ui.core import metadata
from sd35ui.core.settings import GENERATE_KEYS, PARAM, GenerationSettings

GENERIC = "has raised an exception but has not enabled verbose error reporting"  # Gradio's words for a crash
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a bug, not bad luck
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
MAX_PIXEL_STEPS = 64 * 64 * 4  # a valid request may cost at most four steps at 64x64

CONTROL = "".join(map(chr, [*range(0, 32), 127, 0x85, 0x2028, 0x2029, 0x202E, 0xFEFF, 0xFFFF]))
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=CONTROL, max_size=20),
    st.sampled_from(["", " ", "\n\t", "a red circle", "\x00", "{{}}", "%s%n", "'; DROP TABLE", "../../etc/passwd"]),
    st.integers(1_000, 200_000).map(lambda n: "x" * n),  # far past the prompt limit
    st.just("😀" * 3000),
    st.sampled_from(["a \ud800 fox", "\udfff", "x" + "\udc00" * 3]),  # lone surrogates: no tokenizer reads them
)
numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 1, 16, 32, 48, 64, 2**31 - 1, 2**31, 2**63, -(2**63), 1e308, -0.0, 5e-324]),
    st.sampled_from(["64", "1e3", "nan", "inf", "-1", "0x10", " 32 ", "", "twelve"]),
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}),
)
anything = st.one_of(texts, numbers, junk)
hostile_text = st.one_of(texts, junk, numbers)
hostile_number = st.one_of(numbers, texts, junk)


def attack(params: dict[str, tuple[st.SearchStrategy, st.SearchStrategy]], most: int = 3) -> st.SearchStrategy:
    """Values for every parameter, in order: cheap valid ones, except for up to `most` parameters that get hostile
    values. Each example then attacks a few parameters at once, and some are wholly valid and make a real image."""
    names = st.lists(st.sampled_from(list(params)), max_size=most, unique=True)
    drawn = names.flatmap(
        lambda bad: st.fixed_dictionaries(
            {k: hostile if k in bad else valid for k, (valid, hostile) in params.items()}
        )
    )
    return drawn.map(lambda values: {k: values[k] for k in params})  # in the endpoint's parameter order


# (cheap valid values, hostile values) for each kind of parameter
PROMPT = (st.sampled_from(["a red circle", "a small blue square", " x ", "é 😀"]), hostile_text)
NEGATIVE = (st.sampled_from(["", "blurry"]), hostile_text)
STEPS = (st.sampled_from([1, 2, 1.0, "2"]), hostile_number)
GUIDANCE = (st.sampled_from([1, 2.5, 4.5, 10, "3"]), hostile_number)
SIZE = (st.sampled_from([32, 48, 64, 32.0, "32"]), hostile_number)
SEED = (st.integers(0, 2**31 - 1), hostile_number)
FLAG = (st.booleans(), anything)
AXIS = (st.sampled_from(["Steps", "Guidance", "Seed", "Prompt S/R", "None"]), st.one_of(texts, junk))
AXIS_VALUES = (
    st.sampled_from(["1, 2", "2-3", "1-2(+1)", "1-2[2]", "3, 4.5", "red, blue", "5, 6"]),
    st.one_of(
        st.sampled_from(["1-50[64]", "1-1e9", "1-1e9[3]", "nan", "inf, 1", "a, b", ",,,", "-", "1-2(+0)", "3-1(-1)"]),
        st.sampled_from(["1-" + "9" * 400 + "(+1)", "1-" + "9" * 400 + "[4]", "9" * 400, "1e400"]),  # overflow
        texts,
        junk,
    ),
)
SHEET_SEED = (st.sampled_from([-1, 0, 7]), hostile_number)
MARGIN = (st.sampled_from([0, 2]), hostile_number)


class Api:
    """Calls an endpoint through gradio_client, or, for values JSON cannot carry (NaN, inf, which gradio_client
    refuses to send), through Gradio's plain HTTP API, which parses them. Returns (True, outputs) or
    (False, the error message a person would see)."""

    def __init__(self, client: Client, url: str) -> None:
        self.client, self.url = client, url

    def call(self, api_name: str, *args: Any) -> tuple[bool, Any]:
        try:
            json.dumps(args, allow_nan=False, ensure_ascii=False).encode()
        except ValueError:  # UnicodeEncodeError (a lone surrogate) is a ValueError too
            event("sent as raw HTTP (NaN, infinity or a lone surrogate)")
            return self.raw(api_name, list(args))
        try:
            return True, self.client.predict(*args, api_name=f"/{api_name}")
        except AppError as exc:
            return False, str(exc)

    def raw(self, api_name: str, data: list[Any]) -> tuple[bool, Any]:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        try:
            body = json.dumps({"data": data})  # NaN and Infinity as Python's json writes (and reads) them
            connection.request("POST", f"/gradio_api/call/{api_name}", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            assert response.status == 200, answer
            connection.request("GET", f"/gradio_api/call/{api_name}/{json.loads(answer)['event_id']}")
            stream = connection.getresponse().read().decode()
        finally:
            connection.close()
        event, _, data_line = stream.strip().split("\n\n")[-1].partition("\n")
        payload = json.loads(data_line.removeprefix("data: "))
        if event == "event: complete":
            return True, payload
        assert event == "event: error", stream
        message = payload.get("error") if isinstance(payload, dict) else payload
        return False, message or GENERIC


@pytest.fixture(scope="module")
def api(app_server):
    app, config = app_server
    return Api(Client(app.local_url, verbose=False, download_files=False), app.local_url), config


def as_textbox(value: Any) -> Any:
    """What gr.Textbox.preprocess hands the handler."""
    return None if value is None else str(value)


def check(outcome: tuple[bool, Any]) -> tuple[bool, Any]:
    """A valid result, or an error message meant for a person."""
    ok, value = outcome
    event("valid result" if ok else "refused with a message")
    if not ok:
        note(f"error: {str(value)[:300]}")
        assert GENERIC not in value, "an unhandled exception reached Gradio"
        assert "Traceback" not in value and 'File "' not in value
        assert value.strip()
    return outcome


def keeps_serving(client: Client) -> None:
    image, seed, _ = client.predict("a red circle", "", 1, 2, 32, 32, 3, False, api_name="/generate")
    assert seed == 3 and image["path"].endswith(".png")


def generate_cost(tiny_options, values: dict[str, Any]) -> int | None:
    """Pixel-steps a /generate call would run, or None when the app will reject it (cheap)."""
    from sd35ui.app.generate_tab import settings_from_ui

    try:
        s = settings_from_ui(
            tiny_options,
            as_textbox(values["prompt"]),
            as_textbox(values["negative_prompt"]),
            values["steps"],
            values["guidance"],
            values["width"],
            values["height"],
            values["seed"],
            values["randomize_seed"],
        )
    except ValueError:
        return None
    return s.steps * s.width * s.height


@settings(FUZZ, max_examples=150)
@given(
    values=attack(
        {
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "steps": STEPS,
            "guidance": GUIDANCE,
            "width": SIZE,
            "height": SIZE,
            "seed": SEED,
            "randomize_seed": FLAG,
        }
    )
)
def test_generate_survives_any_input(api, tiny_options, values):
    client, config = api
    cost = generate_cost(tiny_options, values)
    assume(cost is None or cost <= MAX_PIXEL_STEPS)
    ok, outputs = check(client.call("generate", *values.values()))
    assert ok == (cost is not None), "invalid input is refused, valid input makes an image"
    if ok:
        image, seed, info = outputs
        name = Path(image["path"] if isinstance(image, dict) else image).name
        saved = [p for p in config.outputs.rglob("*.png") if p.name == name]
        assert len(saved) == 1, "saved to the outputs folder"
        with Image.open(saved[0]) as png:
            assert metadata.read_png_metadata(png)["settings"].seed == seed and f"Seed {seed}" in info


def sheet_cost(tiny_spec, values: dict[str, Any]) -> int | None:
    from sd35ui.app.compare_tab import sheet_spec_from_ui
    from sd35ui.core import sheet

    for key in ("x_axis", "y_axis"):  # gr.Dropdown refuses values that are not among its choices
        if values[key] not in (*sheet.AXIS_CHOICES, "None"):
            return None
    args = {
        k: as_textbox(v) if k in ("prompt", "negative_prompt", "x_values", "y_values") else v
        for k, v in values.items()
    }
    try:
        spec = sheet_spec_from_ui(tiny_spec, **args)
        return sum(c.settings.steps * c.settings.width * c.settings.height for c in sheet.plan_sheet(spec))
    except (ValueError, TypeError, OverflowError):
        return None


@settings(FUZZ, max_examples=50)
@given(
    values=attack(
        {
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "x_axis": AXIS,
            "x_values": AXIS_VALUES,
            "y_axis": AXIS,
            "y_values": AXIS_VALUES,
            "steps": STEPS,
            "guidance": GUIDANCE,
            "width": (st.just(32), hostile_number),
            "height": (st.just(32), hostile_number),
            "seed": SHEET_SEED,
            "show_times": FLAG,
            "margin": MARGIN,
            "legend": FLAG,
            "swap": FLAG,
        }
    )
)
def test_contact_sheet_survives_any_input(api, tiny_spec, values):
    client, _ = api
    cost = sheet_cost(tiny_spec, values)
    assume(cost is None or cost <= 2 * MAX_PIXEL_STEPS)
    ok, _ = check(client.call("contact_sheet", *values.values()))
    assert ok == (cost is not None), "invalid input is refused, valid input makes a sheet"


@settings(FUZZ, max_examples=30)
@given(page=anything, include_cells=anything)
def test_history_survives_any_input(api, page, include_cells):
    client, _ = api
    ok, outputs = check(client.call("history", page, include_cells))
    if ok:  # any number, text or flag shows a page; only a file path that was never uploaded is refused
        items, position, number = outputs[0], outputs[-2], outputs[-1]  # raw HTTP also returns the State
        assert isinstance(items, list) and isinstance(number, int) and number >= 0 and position


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
our_settings = st.fixed_dictionaries(
    {
        "settings": st.dictionaries(
            st.sampled_from(["prompt", "steps", "guidance", "width", "seed", "bogus"]), json_values
        )
    }
)
png_files = st.one_of(
    st.tuples(
        st.just("parameters"),
        st.one_of(
            texts,
            st.just('p\nNegative prompt: n\nSteps: 1e99, CFG scale: nan, Seed: -5, Size: 0x-16, Model: "unterminated'),
        ),
    ),
    st.tuples(st.just(metadata.JSON_KEY), st.one_of(json_values.map(json.dumps), our_settings.map(json.dumps), texts)),
    st.tuples(st.just("raw"), st.binary(max_size=300)),
    st.tuples(st.just("truncated"), st.integers(0, 400)),
)


def write_png(kind: str, payload: Any, folder: Path) -> Path:
    path = Path(tempfile.mkstemp(suffix=".png", dir=folder)[1])
    if kind == "raw":
        path.write_bytes(payload)
        return path
    info = PngImagePlugin.PngInfo()
    if kind == "truncated":
        info.add_text("parameters", metadata.format_parameters(GenerationSettings(prompt="p", seed=1), "m"))
    else:
        text = payload.replace("\x00", "") if isinstance(payload, str) else str(payload)
        info.add_text(kind, text.encode("utf-8", "replace").decode())  # a PNG cannot hold a lone surrogate
    Image.new("RGB", (8, 8), "red").save(path, pnginfo=info)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:payload])
    return path


@settings(FUZZ, max_examples=50)
@given(png=png_files)
def test_load_settings_survives_any_png(api, tmp_path_factory, png):
    client, _ = api
    path = write_png(*png, tmp_path_factory.mktemp("png", numbered=True))
    ok, outputs = check(client.call("load_settings", handle_file(str(path))))
    if ok:
        assert len(outputs) == len(GENERATE_KEYS)
        for key, value in zip(GENERATE_KEYS, outputs):  # a valid value, or gr.skip() (left unchanged)
            if key not in PARAM or PARAM[key].kind == "text" or value == {"__type__": "update"}:
                continue
            if PARAM[key].choices:
                assert value in PARAM[key].choices
            else:
                assert isinstance(value, (int, float)) and math.isfinite(value)


@settings(FUZZ, max_examples=10)
@given(extra=st.lists(anything, max_size=3))
def test_stop_survives_any_input(api, extra):
    client, _ = api
    ok, _ = check(client.raw("stop", extra))  # gradio_client itself fails on surplus values; HTTP does not
    assert ok


@pytest.mark.parametrize(
    "data",
    [[], ["a"], ["a", "", 1, 2, 32, 32, 3, False, "extra"], [None] * 8, [[1, 2]] * 8, [{"a": {"b": {}}}] * 8],
)
def test_malformed_calls_are_refused_and_the_server_keeps_serving(api, data):
    client, _ = api
    ok, message = client.raw("generate", data)
    assert not ok or len(data) > 8  # Gradio ignores surplus values
    assert "Traceback" not in str(message)


def test_the_server_still_serves_after_the_fuzzing(api):
    keeps_serving(api[0].client)
