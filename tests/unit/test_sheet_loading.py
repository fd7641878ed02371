"""Loading a sheet PNG back (Compare > "Load a sheet PNG", History's sheets): a loaded sheet passes exactly the
checks and the size guard a new sheet passes (`sheet.make_spec`), before anything is planned or drawn, and a
description that is not ours gets a titled message, never a raw KeyError, TypeError or RecursionError. The forged
sheets are those a hostile user would send: 12 outer axes, 400,000 X values, a 30000x30000 base, a margin
of 10^7, JSON nested past the recursion limit."""

from __future__ import annotations

import json
import re
import time

import pytest
from PIL import Image
from png_support import FORGED_SHEETS, OUTER_12, forged_sheet, sheet_description

from sd35ui.core import explore, metadata, sheet, sheet_plan
from sd35ui.core.settings import GenerationSettings

BASE = GenerationSettings(prompt="a red circle", width=64, height=64, steps=2, guidance=4.5, seed=3)


def described(**changes):
    return {**sheet_description(), **changes}


def load(tmp_path, description) -> sheet.SheetResult:
    return explore.load_sheet(forged_sheet(tmp_path / "sheet.png", description))


def test_a_description_of_ours_loads_back_into_the_spec_it_was_made_from(tmp_path):
    made = sheet.make_spec(BASE, "Guidance", "1, 4.5", "Steps", "2, 3", model=explore_model())
    result = sheet.SheetResult(made, "tiny-random")
    loaded = load(tmp_path, sheet.sheet_description(result))
    assert loaded.spec == made and loaded.cells == [] and loaded.stopped


def explore_model():
    from sd35ui.core.pipeline import model_spec

    return model_spec("tiny-random")


@pytest.mark.parametrize("name", FORGED_SHEETS)
def test_a_forged_sheet_is_refused_by_the_new_sheet_checks_at_once(tmp_path, name):
    changes, message = FORGED_SHEETS[name]
    started = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path, described(**changes))
    assert time.perf_counter() - started < 2, "refused only after planning or drawing"


def test_the_guard_is_the_one_new_sheets_pass(tmp_path, monkeypatch):
    """Loading goes through make_spec, whose last step is check_sheet: the guard every new sheet passes."""
    guarded = []
    real = sheet_plan.check_sheet  # make_spec's own module
    monkeypatch.setattr(sheet_plan, "check_sheet", lambda spec, *limits: guarded.append(spec) or real(spec, *limits))
    loaded = load(tmp_path, described())
    assert guarded == [loaded.spec]


@pytest.mark.parametrize(
    "payload, message",
    [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),  # a RecursionError inside json
        ("{not json", "not valid JSON"),
        ('"a string"', "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_a_description_that_is_not_ours_gets_a_titled_message(tmp_path, payload, message):
    path = tmp_path / "sheet.png"
    info = metadata.png_info(BASE, "tiny-random", {})
    info.add_text(sheet.SHEET_JSON_KEY, payload)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with pytest.raises(explore.DamagedSheet, match=message) as error:
        explore.load_sheet(path)
    assert "Load a sheet PNG saved by the Compare tab" in str(error.value)


def test_damaged_cell_entries_and_times_are_passed_over(tmp_path):
    loaded = load(tmp_path, described(cells=[1, "x", {"row": "a", "col": None}, None], seconds="NaN"))
    assert loaded.cells == [] and loaded.seconds == 0.0 and loaded.spec.n_cells == 4


def test_settings_a_newer_version_wrote_are_left_out(tmp_path):
    loaded = load(tmp_path, described(base={**sheet_description()["base"], "future_setting": 3}))
    assert loaded.spec.base.prompt == "a red circle"


def test_cells_beside_the_sheet_load_only_when_they_are_that_cells_picture(tmp_path):
    description = sheet_description()
    spec = explore.spec_from_description(description)
    first, second, third = sheet.plan_sheet(spec)[:3]
    description["cells"] = [{"row": c.row, "col": c.col, "page": 0, "seconds": 0.5} for c in (first, second, third)]
    path = forged_sheet(tmp_path / "sheet.png", description)
    Image.new("RGB", (64, 64), "red").save(sheet.cell_file(first, path))  # this cell's own size: loaded
    Image.new("RGB", (128, 64), "red").save(sheet.cell_file(second, path))  # another size: passed over
    sheet.cell_file(third, path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)  # not a picture: passed over
    loaded = explore.load_sheet(path)
    assert [d.cell.index for d in loaded.cells] == [first.index]
    assert loaded.cells[0].image.getpixel((0, 0)) == (255, 0, 0)
    assert loaded.image().size == sheet.sheet_image(loaded).size  # drawn with the missing cells grey


def test_a_prompt_sr_value_past_the_csv_field_limit_is_a_titled_error():
    with pytest.raises(ValueError, match=r"X axis \(Prompt S/R\): a value is longer than 131,072 characters"):
        sheet.parse_axis("Prompt S/R", "red, " + "x" * 140_000)


def test_the_forged_sheet_is_a_few_hundred_bytes(tmp_path):
    path = forged_sheet(tmp_path / "sheet.png", described(outer=OUTER_12), size=(1, 1))
    assert path.stat().st_size < 1200
    assert json.loads(explore_history_text(path))["outer"][11]["values"][9] == 9


def explore_history_text(path):
    from sd35ui.core import history

    return history.read_text_chunks(path)[sheet.SHEET_JSON_KEY]
