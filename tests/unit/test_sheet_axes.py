"""Contact-sheet axes, plan and guard: pure functions, no model."""

from __future__ import annotations

import pytest

from sd35ui.core import sheet
from sd35ui.core.settings import GenerationSettings


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("Steps", "10, 20, 40", (10, 20, 40)),
        ("steps", "10-40(+10)", (10, 20, 30, 40)),
        ("STEPS", "40-10(-10)", (40, 30, 20, 10)),
        ("steps", "1-5", (1, 2, 3, 4, 5)),
        ("steps", "1-50[5]", (1, 13, 26, 38, 50)),
        ("steps", "5, 10-20(+5), 30", (5, 10, 15, 20, 30)),
        ("Guidance", "3, 4.5, 6, 7.5", (3.0, 4.5, 6.0, 7.5)),
        ("guidance", "3-7.5[4]", (3.0, 4.5, 6.0, 7.5)),
        ("cfg", "1-2(+0.25)", (1.0, 1.25, 1.5, 1.75, 2.0)),
        ("CFG Scale", "2-3(+0.1)", (2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0)),
        ("guidance", "7.5-3[4]", (7.5, 6.0, 4.5, 3.0)),
        ("guidance", "5-9[1]", (5.0,)),
        ("seed", "1, 2, 2147483647", (1, 2, 2147483647)),
        ("Seed", "100-103", (100, 101, 102, 103)),
        ("prompt", "fox, cat, dog", ("fox", "cat", "dog")),
        ("Prompt S/R", 'fox, "red, shaggy fox", ""', ("fox", "red, shaggy fox", "")),
        ("prompt s/r", "fox", ("fox",)),
    ],
)
def test_parse_axis_values(name, text, expected):
    axis = sheet.parse_axis(name, text)
    assert axis.values == expected
    assert sheet.parse_axis(name, axis.text()).values == expected  # what metadata writes parses back the same


@pytest.mark.parametrize(
    ("name", "text", "which", "message"),
    [
        ("Steps", "60", "X", "X axis (Steps): 60 is outside the valid range 1 to 50"),
        ("Steps", "0", "Y", "Y axis (Steps): 0 is outside the valid range 1 to 50"),
        ("Steps", "2.5", "X", "2.5 is not a whole number; use whole numbers from 1 to 50"),
        ("Steps", "10-60(+25)", "X", "60 (from 10-60(+25)) is outside the valid range 1 to 50"),
        ("Guidance", "0.5", "X", "X axis (Guidance): 0.5 is outside the valid range 1 to 10"),
        ("Guidance", "nan", "X", "nan is not a finite number"),
        ("Seed", "-1", "X", "-1 is outside the valid range 0 to 2147483647"),
        ("Steps", "", "X", "X axis (Steps) has no values"),
        ("Steps", "  ", "Y", "Y axis (Steps) has no values"),
        ("Steps", "10,,20", "X", "an empty value between commas"),
        ("Steps", "ten", "X", "cannot read 'ten'. Use a list like `10, 20, 40`"),
        ("Steps", "10-20(+x)", "X", "cannot read '10-20(+x)'"),
        ("Steps", "10-40(+0)", "X", "the step in '10-40(+0)' is 0"),
        ("Steps", "40-10(+10)", "X", "write the step as (-10)"),
        ("Steps", "1-50(+0.5)", "X", "makes 99 values; the limit is 64 per axis"),
        ("Seed", "0-2147483647", "X", "makes 2147483648 values; the limit is 64"),
        ("Guidance", "1-10[65]", "X", "asks for 65 values; use 1 to 64"),
        ("Seed", ", ".join(str(i) for i in range(65)), "X", "more than 64 values"),
        ("Steps", "10, 20, 10", "X", "X axis (Steps) repeats 10"),
        ("Steps", "1-3[5]", "X", "repeats 2"),  # 1, 1.5, 2, 2.5, 3 rounds to 1, 2, 2, 3, 3
        ("Prompt S/R", "", "X", "X axis (Prompt S/R) needs the text to find first"),
        ("Sampler", "euler, DPM++", "Y", "Y axis: Sampler (sampler) is 'DPM++'; choose one of Euler, Heun"),
        ("Sampler", "Euler, euler", "X", "X axis (Sampler) repeats a value"),
        ("Colour", "red", "Y", "Y axis: unknown type 'Colour'. Choose one of: Steps, Guidance, Seed, Shift, Sampler"),
    ],
)
def test_parse_axis_errors(name, text, which, message):
    with pytest.raises(ValueError) as error:
        sheet.parse_axis(name, text, which)
    assert message in str(error.value)


@pytest.mark.parametrize("name", ["steps", "Steps", " STEPS ", "guidance", "CFG", "cfg scale", "Seed", "prompt"])
def test_axis_names_are_case_insensitive(name):
    assert sheet.axis_kind(name).label in sheet.AXIS_CHOICES


def test_defaults():
    x = sheet.parse_axis(sheet.DEFAULT_X_TYPE, sheet.DEFAULT_X_VALUES)
    y = sheet.parse_axis(sheet.DEFAULT_Y_TYPE, sheet.DEFAULT_Y_VALUES)
    assert (x.kind, x.values) == ("guidance", (3.0, 4.5, 6.0, 7.5))
    assert (y.kind, y.values) == ("steps", (10, 20, 30, 40))
    assert x.labels() == ["Guidance: 3", "Guidance: 4.5", "Guidance: 6", "Guidance: 7.5"]


BASE = GenerationSettings(prompt="a red fox", negative_prompt="blurry red", steps=30, guidance=4.5, seed=7)


def test_plan_takes_everything_else_from_the_base():
    spec = sheet.make_spec(BASE)
    cells = sheet.plan_sheet(spec)
    assert spec.n_cells == len(cells) == 16
    assert [(c.row, c.col) for c in cells[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert cells[5].settings == BASE.replace(guidance=4.5, steps=20)
    assert {c.settings.seed for c in cells} == {7}
    assert {(c.settings.prompt, c.settings.width) for c in cells} == {("a red fox", 1024)}


def test_random_seed_is_drawn_once_for_the_whole_sheet():
    spec = sheet.make_spec(BASE.replace(seed=None))
    assert spec.base.seed is not None
    assert {c.settings.seed for c in sheet.plan_sheet(spec)} == {spec.base.seed}
    unresolved = sheet.SheetSpec(BASE.replace(seed=None), sheet.parse_axis("steps", "1, 2"))
    assert len({c.settings.seed for c in sheet.plan_sheet(unresolved)}) == 1


def test_seed_axis_varies_the_seed():
    spec = sheet.make_spec(BASE, "Seed", "1, 2, 3", None)
    assert [c.settings.seed for c in sheet.plan_sheet(spec)] == [1, 2, 3]
    assert spec.rows == 1 and spec.y is None


def test_prompt_search_replace():
    spec = sheet.make_spec(BASE, "Prompt S/R", 'red, blue, "deep, dark green"', "prompt", "fox, cat")
    prompts = [(c.settings.prompt, c.settings.negative_prompt) for c in sheet.plan_sheet(spec)]
    assert prompts[:3] == [
        ("a red fox", "blurry red"),
        ("a blue fox", "blurry blue"),
        ("a deep, dark green fox", "blurry deep, dark green"),
    ]
    assert prompts[3] == ("a red cat", "blurry red")


def test_prompt_search_text_must_be_in_the_prompt():
    with pytest.raises(ValueError, match=r"Y axis \(Prompt S/R\): the text to find, 'wolf', is not in the prompt"):
        sheet.make_spec(BASE, y_type="prompt", y_values="wolf, dog")


def test_same_axis_twice_is_refused():
    with pytest.raises(ValueError, match="X and Y are both Steps"):
        sheet.make_spec(BASE, "steps", "1, 2", "Steps", "3, 4")


@pytest.mark.parametrize("none", [None, "", "None", "none"])
def test_no_y_axis(none):
    spec = sheet.make_spec(BASE, y_type=none, y_values="ignored")
    assert spec.y is None and spec.n_cells == 4


@pytest.mark.parametrize("margin", [-1, 201, 2.5, True, float("nan"), "8"])
def test_bad_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        sheet.make_spec(BASE, margin=margin)


def test_margin_from_a_slider():
    assert sheet.make_spec(BASE, margin=8.0).margin == 8


def test_guard_checks_prompt_search_text_of_a_hand_built_spec():
    spec = sheet.SheetSpec(BASE, sheet.parse_axis("prompt", "wolf, dog"))
    with pytest.raises(ValueError, match="'wolf', is not in the prompt"):
        sheet.check_sheet(spec)


def test_base_settings_are_validated():
    with pytest.raises(ValueError, match="multiple of 16"):
        sheet.make_spec(BASE.replace(width=1000))


def test_guard_refuses_too_many_cells():
    small = BASE.replace(width=256, height=256)
    with pytest.raises(ValueError, match=r"This sheet has 72 cells \(9 x 8\); the limit is 64"):
        sheet.make_spec(small, "seed", "1-9", "steps", "1-8")  # make_spec guards every spec it makes
    spec = sheet.make_spec(small, "seed", "1-9", "steps", "1-8", max_cells=72)
    with pytest.raises(ValueError, match=r"This sheet has 72 cells \(9 x 8\); the limit is 64"):
        sheet.check_sheet(spec)  # and run_sheet guards again whatever it is handed
    sheet.check_sheet(spec, max_cells=72)


def test_guard_refuses_too_many_pixels():
    with pytest.raises(ValueError) as error:
        sheet.make_spec(BASE.replace(width=1440, height=1440), "seed", "1-8", "steps", "1-5")
    message = str(error.value)
    assert (
        "40 cells of 1440x1440 hold 79.1 megapixels; the limit is 64.0 megapixels (32 cells at this size)" in message
    )
    sheet.check_sheet(sheet.make_spec(BASE, "seed", "1-8", "steps", "1-8"))  # 64 native 1024 cells fit exactly


def test_estimate_from_the_first_timed_cell():
    from sd35ui.core.generate import GenerationResult

    cells = sheet.plan_sheet(sheet.make_spec(BASE, "guidance", "1, 4.5", "steps", "10, 20"))
    assert sheet.estimate_seconds(cells, []) is None
    first = sheet.CellResult(cells[0], GenerationResult(None, cells[0].settings, "m", {"total": 2.0}))
    # cell 0 is 10 unguided passes in 2 s; left: 20 guided + 20 unguided + 40 guided passes
    assert sheet.estimate_seconds(cells, [first]) == pytest.approx(0.2 * 80)
