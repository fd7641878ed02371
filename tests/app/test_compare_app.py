"""The Compare tab through gradio_client: the /contact_sheet API, its files, its guard and its stop."""

import json
import time
import zipfile

import numpy as np
import pytest
from app_support import SHEET
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from sd35ui.core import metadata
from sd35ui.core.generate import generate


def test_api_parameter_names_are_stable(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/contact_sheet"]
    names = [p["parameter_name"] for p in api["parameters"]]
    assert names[: len(SHEET)] == list(SHEET)


def test_contact_sheet_returns_a_sheet_whose_metadata_describes_the_axes(client, tiny_pipe):
    sheet_path, cells, status, zip_path, *_ = client.predict(**SHEET, api_name="/contact_sheet")
    assert "4 cells" in status and "seed 9" in status
    with Image.open(sheet_path) as image:
        assert image.format == "PNG"
        fields = metadata.parse_parameters(image.info["parameters"])["fields"]
        description = json.loads(image.info["sd35ui-sheet"])
    assert fields["Script"] == "X/Y/Z plot"
    assert (fields["X Type"], fields["X Values"], fields["Y Type"], fields["Y Values"]) == (
        "Guidance",
        "1, 4.5",
        "Steps",
        "2, 3",
    )
    assert description["fixed"]["seed"] == 9 and len(description["cells"]) == 4
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    assert len(names) == 6 and "index.html" in names  # the sheet, 4 cells and the explorer page
    # every cell is the image the Generate tab makes for its settings
    cell_files = [c["image"] for c in cells]
    assert [c["caption"] for c in cells][:2] == ["Guidance: 1 · Steps: 2", "Guidance: 4.5 · Steps: 2"]
    assert len(cell_files) == 4
    for path in cell_files:
        with Image.open(path) as image:
            settings = metadata.read_png_metadata(image)["settings"]
            single = generate(tiny_pipe, settings)
            assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(single.image))


def test_cells_are_saved_as_they_are_made(client, app_server):
    _, config = app_server
    before = set(config.outputs.rglob("*.png"))
    client.predict(**{**SHEET, "y_axis": "None", "seed": 21}, api_name="/contact_sheet")
    new = set(config.outputs.rglob("*.png")) - before
    assert len(new) == 3  # two cells and the sheet
    for path in new:
        assert metadata.read_png_metadata(str(path))["settings"].prompt == "a red circle"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"x_values": "1-10[70]"}, "1 to 64"),
        ({"x_values": "1-10[10]", "y_values": "1-10[10]"}, "limit is 64"),
        ({"x_values": "0.5, 2"}, "Guidance"),
        ({"x_axis": "Colour"}, "Steps"),  # not an axis: the message lists the axes
        ({"x_axis": "Sampler"}, "choose one of Euler, Heun"),  # an axis, but the values are not samplers
        ({"x_values": ""}, "X"),
        ({"y_axis": "Prompt S/R", "y_values": "dog, cat"}, "dog"),
    ],
)
def test_bad_sheets_are_refused_before_generating(client, bad, message):
    with pytest.raises(AppError) as info:
        client.predict(**{**SHEET, **bad}, api_name="/contact_sheet")
    assert message in str(info.value)


def test_stop_keeps_the_finished_cells(app_server):
    app, _ = app_server
    client = Client(app.local_url, verbose=False)
    job = client.submit(
        **{**SHEET, "x_values": "1-9[8]", "y_axis": "None", "steps": 40, "width": 128, "height": 128},
        api_name="/contact_sheet",
    )
    deadline = time.time() + 120
    while len(job.outputs()) < 2:  # wait for two cells to come in
        assert time.time() < deadline and not job.done()
        time.sleep(0.05)
    client.predict(api_name="/stop")  # the same Stop as the Generate tab: it stops this session's job
    sheet_path, cells, status, *_ = job.result(timeout=120)
    assert "stopped" in status
    assert 2 <= len(cells) < 8
    with Image.open(sheet_path) as image:
        assert json.loads(image.info["sd35ui-sheet"])["stopped"] is True


def test_outer_axes_and_resume_through_the_api(client, app_server):
    """/contact_sheet takes Z (and W) as optional last parameters; the same sheet again reuses every cell."""
    args = ("a red circle", "", "Guidance", "1, 4.5", "Steps", "1, 2", 2, 4.5, 32, 32, 17)
    picture, cells, status, *_ = client.predict(
        *args, z_axis="Sampler", z_values="Euler, Heun", api_name="/contact_sheet"
    )
    assert len(cells) == 8 and "8 cells" in status and "reused" not in status
    assert cells[4]["caption"] == "Guidance: 1 · Steps: 1 · Sampler: Heun"
    _, again, status, *_ = client.predict(*args, z_axis="Sampler", z_values="Euler, Heun", api_name="/contact_sheet")
    assert "8 reused from earlier" in status
    _, _, fresh_status, *_ = client.predict(
        *args, z_axis="Sampler", z_values="Euler, Heun", resume=False, api_name="/contact_sheet"
    )
    assert "reused" not in fresh_status
    with pytest.raises(AppError, match="Two axes are Steps"):
        client.predict(*args, z_axis="Steps", z_values="3", api_name="/contact_sheet")
