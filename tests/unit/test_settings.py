import math

import pytest

from sd35ui.core.settings import (
    GUIDANCE_PRESETS,
    MAX_SEED,
    RANGES,
    SD35_MEDIUM,
    STEP_PRESETS,
    GenerationSettings,
)


def test_defaults_follow_the_usage_guide():
    s = GenerationSettings.validated(prompt="a fox")
    assert (s.steps, s.guidance, s.width, s.height, s.seed) == (40, 4.5, 1024, 1024, None)
    assert STEP_PRESETS == {"Quick draft": 20, "Standard": 40, "High quality": 50}
    assert GUIDANCE_PRESETS == {"Abstract": 3.5, "General": 4.5, "Precise": 7.5}
    assert (RANGES["steps"].minimum, RANGES["steps"].maximum) == (1, 50)
    assert (RANGES["guidance"].minimum, RANGES["guidance"].maximum, RANGES["guidance"].step) == (1.0, 10.0, 0.1)


def test_settings_are_frozen():
    s = GenerationSettings(prompt="a fox")
    with pytest.raises(AttributeError):
        s.steps = 3  # type: ignore[misc]


def test_loose_input_is_coerced():
    s = GenerationSettings.validated(prompt="x", steps="20", guidance="7.5", width=512.0, height="768", seed="42")
    assert (s.steps, s.guidance, s.width, s.height, s.seed) == (20, 7.5, 512, 768, 42)


@pytest.mark.parametrize(
    "values, words",
    [
        ({"prompt": ""}, ["prompt is empty"]),
        ({"prompt": "   "}, ["prompt is empty"]),
        ({"prompt": "x", "steps": 0}, ["steps", "0", "1 to 50"]),
        ({"prompt": "x", "steps": 51}, ["steps", "51", "1 to 50"]),
        ({"prompt": "x", "steps": 2.5}, ["steps", "whole number"]),
        ({"prompt": "x", "steps": "ten"}, ["steps", "'ten'", "number"]),
        ({"prompt": "x", "guidance": 0.5}, ["guidance", "0.5", "1 to 10"]),
        ({"prompt": "x", "guidance": math.nan}, ["guidance", "finite"]),
        ({"prompt": "x", "guidance": math.inf}, ["guidance", "finite"]),
        ({"prompt": "x", "guidance": True}, ["guidance", "number"]),
        ({"prompt": "x", "width": 1000}, ["Width", "multiple of 16", "1000", "Use 992 or 1008"]),
        ({"prompt": "x", "height": 1000}, ["Height", "multiple of 16", "Use 992 or 1008"]),
        ({"prompt": "x", "width": 2048}, ["width", "2048", "256 to 1440"]),
        ({"prompt": "x", "width": 128}, ["width", "256 to 1440"]),
        ({"prompt": "x", "seed": -1}, ["seed", "-1", f"0 to {MAX_SEED}"]),
        ({"prompt": "x", "seed": MAX_SEED + 1}, ["seed", f"0 to {MAX_SEED}"]),
        ({"prompt": "x" * 5000}, ["5000 characters", "limit"]),
        ({"prompt": "a\x00b"}, ["NUL"]),
        ({"prompt": 12}, ["must be text"]),
    ],
)
def test_invalid_values_name_field_value_and_range(values, words):
    with pytest.raises(ValueError) as info:
        GenerationSettings.validated(SD35_MEDIUM, **values)
    for word in words:
        assert word in str(info.value)


def test_with_seed_draws_once_and_keeps_fixed_seeds():
    fixed = GenerationSettings(prompt="x", seed=7)
    assert fixed.with_seed() is fixed
    drawn = GenerationSettings(prompt="x").with_seed()
    assert 0 <= drawn.seed <= MAX_SEED


def test_nearest_size_stays_inside_the_model_range():
    with pytest.raises(ValueError, match="Use 1440"):
        GenerationSettings.validated(prompt="x", width=1439)
