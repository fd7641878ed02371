"""Settings loaded from a PNG go together as Generate checks them: History's "Load settings" once took DPM++ 2M
with the Karras schedule, each valid alone, and Generate then refused them. Loading now checks the combination
(`GenerationSettings.check_combination`) and says what was wrong and what it loaded instead."""

from __future__ import annotations

import pytest
from png_support import combination_png, png, text

from sd35ui.core import history
from sd35ui.core.settings import PARAM, GenerationSettings


def generate_accepts(values: dict) -> GenerationSettings:
    """What Generate does with the loaded values (the tab's defaults for the rest)."""
    return GenerationSettings.validated(**{"prompt": "x", **{k: v for k, v in values.items() if k in PARAM}})


def test_dpm_with_karras_loads_the_sampler_with_the_default_schedule(tmp_path):
    loaded = history.load_settings(combination_png(tmp_path / "karras.png"))
    assert (loaded.values["sampler"], loaded.values["schedule"]) == ("DPM++ 2M", "Default")
    (change,) = loaded.changed
    assert "The Karras schedule works with the Euler sampler only" in change
    assert change.endswith("Loaded the Default schedule in place of the PNG's schedule type, 'Karras'.")
    assert loaded.notes == []
    generate_accepts(loaded.values)


def test_a1111_dpm_with_karras(tmp_path):
    path = tmp_path / "a1111.png"
    path.write_bytes(png([text("parameters", "a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, Seed: 5")]))
    loaded = history.load_settings(path)
    assert (loaded.values["sampler"], loaded.values["schedule"], loaded.values["seed"]) == ("DPM++ 2M", "Default", 5)
    assert len(loaded.changed) == 1
    generate_accepts(loaded.values)


def test_skip_layer_guidance_that_stops_before_it_starts_is_loaded_off(tmp_path):
    path = combination_png(tmp_path / "slg.png", sampler="Euler", slg_scale=2.5, slg_start=0.5, slg_stop=0.2)
    loaded = history.load_settings(path)
    assert (loaded.values["slg_scale"], loaded.values["slg_start"], loaded.values["slg_stop"]) == (0.0, 0.5, 0.2)
    assert loaded.values["schedule"] == "Karras"  # with Euler, as the file has it
    (change,) = loaded.changed
    assert change.startswith("Skip-layer guidance starts at 0.5 of the steps and stops at 0.2")
    assert change.endswith("Loaded skip-layer guidance off (scale 0) in place of the PNG's skip-layer guidance, 2.5.")
    generate_accepts(loaded.values)


def test_both_at_once(tmp_path):
    path = combination_png(tmp_path / "both.png", slg_scale=2.5, slg_start=0.5, slg_stop=0.2)
    loaded = history.load_settings(path)
    assert (loaded.values["schedule"], loaded.values["slg_scale"]) == ("Default", 0.0)
    assert [c.split(" ")[1] for c in loaded.changed] == ["Karras", "guidance"]
    generate_accepts(loaded.values)


@pytest.mark.parametrize(
    "settings",
    [dict(sampler="Euler"), dict(schedule="Default"), dict(sampler="Heun", schedule="Default")],
    ids=["Euler with Karras", "DPM++ 2M with Default", "Heun with Default"],
)
def test_settings_that_go_together_load_unchanged(tmp_path, settings):
    loaded = history.load_settings(combination_png(tmp_path / "fine.png", **settings))
    assert loaded.changed == [] and loaded.notes == []
    assert {k: loaded.values[k] for k in settings} == settings


def test_a_combination_no_fallback_mends_loads_nothing(monkeypatch):
    """A rule of `check_combination` without a row in COMBINATION_FALLBACKS: nothing is loaded, and it says so."""
    monkeypatch.setattr(history, "COMBINATION_FALLBACKS", ())
    with pytest.raises(ValueError, match="do not go together, so none were loaded. The Karras schedule works"):
        history.combine_values({"sampler": "Heun", "schedule": "Karras"})
