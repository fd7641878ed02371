"""Loading a PNG's settings through the live app's /load_settings (History's "Load settings from a PNG"): text from
the PNG reaches the toasts escaped, as the browser would render it (Gradio renders a toast's message as
HTML), and settings that do not go together are loaded changed so that Generate takes them, with a warning that
says what changed. The browser side is tests/browser/test_toasts.py; without a server, tests/unit/test_quoting.py
and tests/unit/test_loaded_settings.py."""

from __future__ import annotations

import asyncio

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import StatusUpdate
from png_support import HTML_KEY, HTML_SAMPLER, HTML_SCHEDULE, combination_png, html_key_png, html_settings_png

from sd35ui.core import history

SKIP = {"__type__": "update"}  # what /load_settings returns for an input it leaves unchanged


def load(client, path) -> tuple[dict, list[tuple[str, str]]]:
    """(the values /load_settings loaded, by key; its toasts as (message, level)) for the PNG at `path`."""
    job = client.submit(handle_file(str(path)), api_name="/load_settings")
    outputs = job.result(timeout=60)

    async def toasts() -> list[tuple[str, str]]:
        return [update.log async for update in job if isinstance(update, StatusUpdate) and update.log]

    values = {key: value for key, value in zip(history.GENERATE_KEYS, outputs) if value != SKIP}
    return values, asyncio.run(toasts())


def assert_escaped(message: str, raw: str) -> None:
    assert "<" not in message and ">" not in message, message
    assert raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in message, message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("a1111", [False, True], ids=["sd35ui JSON", "A1111 text"])
def test_a_sampler_and_schedule_in_html_reach_the_warning_escaped(client, tmp_path, a1111):
    values, toasts = load(client, html_settings_png(tmp_path / "html.png", a1111=a1111))
    assert values["prompt"] == "a red circle" and "sampler" not in values and "schedule" not in values
    levels = dict((level, message) for message, level in toasts)
    assert f"Loaded the {'A1111-style' if a1111 else 'sd35ui'} settings of html.png" in levels["info"]
    assert_escaped(levels["warning"], HTML_SAMPLER)
    assert_escaped(levels["warning"], HTML_SCHEDULE)


@pytest.mark.timeout(120)
def test_a_settings_key_in_html_reaches_the_error_escaped(client, tmp_path):
    with pytest.raises(AppError, match="could not be understood") as caught:
        load(client, html_key_png(tmp_path / "key.png"))
    assert_escaped(str(caught.value), HTML_KEY)


@pytest.mark.timeout(120)
def test_dpm_with_karras_is_loaded_with_the_default_schedule_and_generate_takes_it(client, tmp_path):
    values, toasts = load(client, combination_png(tmp_path / "karras.png", width=64, height=64, seed=4))
    assert (values["sampler"], values["schedule"], values["steps"]) == ("DPM++ 2M", "Default", 3)
    (warning,) = [message for message, level in toasts if level == "warning"]
    assert "The Karras schedule works with the Euler sampler only" in warning
    assert "Loaded the Default schedule in place of the PNG's schedule type, 'Karras'." in warning
    path, seed, _ = client.predict(**values, api_name="/generate")  # what the Generate tab now sends
    assert seed == 4 and path.endswith(".png")
