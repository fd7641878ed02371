"""The sheet explorer's engine on the real tiny pipeline: sheets of up to four axes, re-arranged
without generating (pixel-equal to the sheet made with those axes from the start), what changes along each numeric
axis, the self-contained page in the zip, resume (only the missing cells are generated: transformer calls counted)
and loading a saved sheet back."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pytest

from sd35ui.core import explore, explorer_page, generate, sheet
from sd35ui.core.pipeline import get_pipeline, model_spec
from sd35ui.core.settings import GenerationSettings

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=32, height=32, steps=2, guidance=4.5, seed=5)
AXES = dict(x_type="Steps", x_values="1, 2", y_type="Guidance", y_values="1, 4.5")
OUTER = (("Sampler", "Euler, Heun"),)


@pytest.fixture(scope="module")
def pipe(tiny_options):
    return get_pipeline(tiny_options)


@pytest.fixture(scope="module")
def three_axes(pipe):
    spec = sheet.make_spec(BASE, **AXES, model=TINY, outer=OUTER)
    return sheet.run_sheet(pipe, spec)


@pytest.fixture
def calls(pipe):
    counted: list[int] = []
    hook = pipe.transformer.register_forward_hook(lambda *_: counted.append(1))
    yield counted
    hook.remove()


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_a_sheet_takes_two_outer_axes_and_counts_every_cell_before_running():
    spec = sheet.make_spec(BASE, **AXES, model=TINY, outer=(("Sampler", "Euler, Heun"), ("Seed", "1, 2, 3")))
    assert (spec.cols, spec.rows, spec.pages, spec.n_cells) == (2, 2, 6, 24)
    assert spec.page_label(4) == "Sampler: Heun · Seed: 2"
    cells = sheet.plan_sheet(spec)
    assert [c.settings.seed for c in cells[:4]] == [1] * 4 and cells[-1].settings.sampler == "Heun"
    with pytest.raises(ValueError, match="at most 2 outer axes"):
        sheet.make_spec(BASE, **AXES, model=TINY, outer=(("Seed", "1"), ("Shift", "3"), ("T5", "On")))
    with pytest.raises(ValueError, match="Two axes are Steps"):
        sheet.make_spec(BASE, **AXES, model=TINY, outer=(("Steps", "3"),))
    with pytest.raises(ValueError, match=r"68 cells \(2 x 2 x 17\); the limit is 64"):
        sheet.make_spec(BASE, **AXES, model=TINY, outer=(("Seed", "1-17[17]"),))


@pytest.mark.parametrize(
    "order, shown, axes",
    [
        ([1, 0, 2], None, dict(x_type="Guidance", x_values="1, 4.5", y_type="Steps", y_values="1, 2")),
        ([2, 0, 1], None, dict(x_type="Sampler", x_values="Euler, Heun", y_type="Steps", y_values="1, 2")),
        ([0, 2, 1], {1: [1]}, dict(x_type="Steps", x_values="1, 2", y_type="Sampler", y_values="Euler, Heun")),
    ],
    ids=["swap-x-y", "outer-to-x", "hide-a-value"],
)
def test_rearranging_gives_the_picture_of_the_sheet_made_with_those_axes(pipe, three_axes, calls, order, shown, axes):
    moved = explore.rearrange(three_axes, order, shown)
    assert calls == []  # nothing generated
    outer = [(a.label, a.text()) for a in moved.spec.outer]
    fresh = sheet.run_sheet(pipe, sheet.make_spec(BASE, **axes, model=TINY, outer=outer))
    assert moved.spec == fresh.spec
    assert np.array_equal(pixels(moved.image()), pixels(fresh.image()))


def test_rearranging_refuses_an_axis_left_out_or_every_value_hidden(three_axes):
    with pytest.raises(ValueError, match="exactly one place"):
        explore.rearrange(three_axes, [0, 1])
    with pytest.raises(ValueError, match="at least one value of Guidance"):
        explore.rearrange(three_axes, [0, 1, 2], {1: []})


def test_changes_along_numeric_axes_are_in_the_sheets_json(three_axes):
    changes = sheet.sheet_description(three_axes)["changes"]
    assert set(changes) == {"Steps", "Guidance"}  # not Sampler: its values are not numbers
    steps = changes["Steps"]
    assert steps["values"] == [1.0, 2.0] and len(steps["distance_to_next"]) == 1
    assert steps["distance_to_next"][0] > 0 and all(s is not None and s > 0 for s in steps["seconds"])


def test_the_zip_holds_a_page_that_names_every_cell_and_the_sheet_loads_back(three_axes, tmp_path):
    sheet_path, cell_paths, zip_path = sheet.save_sheet(three_axes, sheet_path=tmp_path / "s.png")
    assert [p.name for p in cell_paths][:2] == ["s-p1r1c1.png", "s-p1r1c2.png"] and len(cell_paths) == 8
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        page = archive.read("index.html").decode()
    manifest = explorer_page.read_manifest(page)
    assert {c["file"] for c in manifest["cells"]} == {p.name for p in cell_paths} <= names
    assert [a["name"] for a in manifest["axes"]] == ["Steps", "Guidance", "Sampler"]
    assert manifest["arrangement"] == {"x": 0, "y": 1, "outer": [2]}
    assert (tmp_path / "s.html").is_file()
    loaded = explore.load_sheet(sheet_path)
    assert loaded.spec == three_axes.spec and len(loaded.cells) == 8
    assert np.array_equal(pixels(loaded.image()), pixels(three_axes.image()))  # cells read back losslessly


def test_resume_generates_only_the_missing_cells(pipe, tmp_path, calls):
    spec = sheet.make_spec(BASE, **AXES, model=TINY)
    stop_after = 2
    made: list = []

    def keep(done):
        made.append(done)
        sheet.save_cell(done, tmp_path / "day" / "first.png")
        if len(made) == stop_after:
            stop.set()

    stop = threading.Event()
    (tmp_path / "day").mkdir()
    first = sheet.run_sheet(pipe, spec, stop=stop, on_cell=keep)
    assert first.stopped and len(first.cells) == stop_after
    calls.clear()
    reuse = explore.reusable_cells(tmp_path)
    assert len(reuse) == stop_after
    second = sheet.run_sheet(pipe, spec, reuse=reuse)
    assert second.complete and second.reused == stop_after
    left = [d for d in second.cells if not d.reused]
    assert len(calls) == sum(generate.model_calls(d.settings) for d in left) > 0
    fresh = sheet.run_sheet(pipe, spec)
    assert np.array_equal(pixels(second.image()), pixels(fresh.image()))
