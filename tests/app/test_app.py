"""The app end to end through gradio_client, on the tiny model: the stable API, errors, stop."""

import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from sd35ui.core import metadata
from sd35ui.core.settings import GenerationSettings

ARGS = dict(
    prompt="a red circle", negative_prompt="", steps=4, guidance=4.5, width=64, height=64, seed=5, randomize_seed=False
)


def test_api_parameter_names_are_stable(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
    names = [p["parameter_name"] for p in api["parameters"]]
    assert names[: len(ARGS)] == list(ARGS)  # settings added since come after, with defaults
    assert all(p["parameter_has_default"] for p in api["parameters"][len(ARGS) :])
    assert len(api["returns"]) == 3


def test_generate_returns_png_with_metadata(client, app_server):
    _, config = app_server
    path, seed, info = client.predict(**ARGS, api_name="/generate")
    assert seed == 5 and "Seed 5" in info and "64x64" in info
    with Image.open(path) as image:
        assert image.format == "PNG"
        read = metadata.read_png_metadata(image)
    assert read["settings"] == GenerationSettings(
        prompt="a red circle", steps=4, guidance=4.5, width=64, height=64, seed=5
    )
    saved = list(config.outputs.rglob("*.png"))
    assert any(p.name == path.rsplit("/", 1)[-1] for p in saved), "the image is saved in the outputs folder"


def test_random_seed_is_returned(client):
    _, seed, info = client.predict(**{**ARGS, "randomize_seed": True}, api_name="/generate")
    assert isinstance(seed, int) and f"Seed {seed}" in info


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"width": 72 + 4}, "multiple of 16"),
        ({"guidance": 0.2}, "guidance"),
        ({"steps": 0}, "steps"),
        ({"prompt": "x" * 3000}, "limit"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(client, bad, message):
    with pytest.raises(AppError) as info:
        client.predict(**{**ARGS, **bad}, api_name="/generate")
    assert message.lower() in str(info.value).lower()
    assert "Traceback" not in str(info.value)
    path, _, _ = client.predict(**ARGS, api_name="/generate")
    assert path.endswith(".png")


def test_stop_stops_only_the_callers_job(app_server):
    app, _ = app_server
    alice, bob = Client(app.local_url, verbose=False), Client(app.local_url, verbose=False)
    long = {**ARGS, "steps": 50, "width": 256, "height": 256}
    job = alice.submit(**long, api_name="/generate")
    deadline = time.time() + 60
    while job.status().code.name != "PROGRESS":  # running, and past its first step
        assert time.time() < deadline, job.status()
        time.sleep(0.05)
    bob.predict(api_name="/stop")  # Bob has nothing running: Alice's job must go on
    time.sleep(0.3)
    assert not job.done()
    alice.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped"):
        job.result(timeout=60)


def test_the_page_says_which_demo_model_runs(app_server):
    from sd35ui.core.pipeline import LoadOptions, model_banner

    app, _ = app_server
    banners = [b.value for b in app.blocks.values() if getattr(b, "elem_id", None) == "model-banner"]
    assert len(banners) == 1 and "random weights, images are noise" in banners[0]
    assert "trained on coloured shapes" in model_banner(LoadOptions(model="tiny"))
    assert "--model" in model_banner(LoadOptions(model="tiny"))
