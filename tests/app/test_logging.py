"""What the real app logs: a user's mistake (invalid input through the API, a Stop) is one line, not a traceback;
a fault inside the server still logs its traceback (`context.told_the_user`)."""

from __future__ import annotations

import logging

import pytest
from app_support import SHEET
from gradio_client import Client
from gradio_client.exceptions import AppError

from sd35ui.core.pipeline import get_pipeline

ARGS = dict(
    prompt="a red circle", negative_prompt="", steps=2, guidance=4.5, width=64, height=64, seed=5, randomize_seed=False
)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sd35ui" and " refused: " in r.getMessage()]


@pytest.mark.parametrize(
    "api, values, message",
    [
        ("/generate", {**ARGS, "steps": 0.2}, "Steps (steps) must be a whole number, got 0.2"),
        ("/generate", {**ARGS, "width": "wide\nand\x1b[31mred"}, "Size (width) must be a number"),
        ("/contact_sheet", {**SHEET, "x_axis": "Steps", "x_values": "x, y"}, "X axis (Steps): cannot read 'x'"),
        ("/contact_sheet", {**SHEET, "resume": "maybe"}, "Resume must be true or false"),
    ],
)
def test_invalid_input_is_logged_in_one_line_with_no_traceback(client, capfd, caplog, api, values, message):
    caplog.set_level(logging.INFO, logger="sd35ui")
    with pytest.raises(AppError, match="must|cannot"):
        client.predict(**values, api_name=api)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err  # Gradio prints one for each exception it is not told is no fault
    lines = refusals(caplog)
    assert len(lines) == 1 and message in lines[0], lines
    assert "\n" not in lines[0] and "\x1b" not in lines[0], "one line, whatever the input quoted"


def test_a_stop_is_logged_in_one_line_with_no_traceback(app_server, capfd, caplog):
    app, _ = app_server
    caplog.set_level(logging.INFO, logger="sd35ui")
    client = Client(app.local_url, verbose=False)
    job = client.submit(**{**ARGS, "steps": 50, "width": 256, "height": 256}, api_name="/generate")
    while job.status().code.name != "PROGRESS":
        assert not job.done(), job.result()
    client.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped"):
        job.result(timeout=120)
    assert "Traceback" not in capfd.readouterr().err
    assert [line.split(":")[0] for line in refusals(caplog)] == ["generate_image refused"]


def test_a_fault_inside_the_server_still_logs_its_traceback(client, tiny_options, capfd, caplog):
    caplog.set_level(logging.INFO, logger="sd35ui")
    pipe = get_pipeline(tiny_options)  # the app's own pipeline object

    def fault(_module, _inputs, _output):
        raise RuntimeError("injected fault in the VAE")

    handle = pipe.vae.decoder.register_forward_hook(fault)
    try:
        with pytest.raises(AppError, match="still running"):
            client.predict(**ARGS, api_name="/generate")
    finally:
        handle.remove()
    err = capfd.readouterr().err
    assert "Traceback" in err and "RuntimeError: injected fault in the VAE" in err, err
    assert refusals(caplog) == [], "a fault is not a refusal"
