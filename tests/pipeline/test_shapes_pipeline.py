"""The training script builds the architecture of the shipped coloured-shapes model (both are loaded)."""

from __future__ import annotations


def test_training_builds_the_architecture_that_ships(tmp_path):
    """`python -m sd35ui.models.train` starts from the shapes of the shipped model, so a retrain can replace it."""
    from diffusers import StableDiffusion3Pipeline

    from sd35ui.models.tiny import shipped_model_path
    from sd35ui.models.train import Recipe, build_components

    fresh = build_components(Recipe(), tmp_path)
    shipped = StableDiffusion3Pipeline.from_pretrained(str(shipped_model_path("tiny")))
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        ours = {k: tuple(v.shape) for k, v in fresh[name].state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in getattr(shipped, name).state_dict().items()}
        assert ours == theirs, name
