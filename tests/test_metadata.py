import pytest
from PIL import Image

from sd35ui import metadata, storage
from sd35ui.settings import GenerationSettings

SETTINGS = GenerationSettings(
    prompt="a fox, in snow: watercolor\nsecond line",
    negative_prompt="blurry, low quality",
    steps=28,
    guidance=5.5,
    width=832,
    height=1216,
    seed=123456,
)


def test_parameters_text_is_a1111_format():
    simple = GenerationSettings(prompt="a cat", steps=40, guidance=4.5, width=1024, height=1024, seed=123)
    text = metadata.format_parameters(simple, "stabilityai/stable-diffusion-3.5-medium")
    assert text == (
        "a cat\nSteps: 40, Sampler: Euler (flow matching), CFG scale: 4.5, Seed: 123, Size: 1024x1024, "
        "Model: stabilityai/stable-diffusion-3.5-medium"
    )


@pytest.mark.parametrize("drop", [None, metadata.JSON_KEY])
def test_png_round_trip(tmp_path, drop):
    info = metadata.png_info(SETTINGS, "tiny")
    path = storage.save_png(Image.new("RGB", (16, 16), "red"), info, tmp_path / "a.png")
    with Image.open(path) as image:
        if drop:  # another tool kept only A1111's chunk
            image.info.pop(drop)
        read = metadata.read_png_metadata(image)
    assert read["settings"] == SETTINGS
    assert read["model"] == "tiny"
    assert read["source"] == (metadata.PARAMETERS_KEY if drop else metadata.JSON_KEY)


def test_reads_another_tools_parameters():
    text = (
        "masterpiece, a castle\nNegative prompt: ugly\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, "
        'CFG scale: 7, Seed: 42, Size: 512x768, Model hash: abc, Model: sdxl, Lora hashes: "x: 1, y: 2", '
        "Version: v1.10.1"
    )
    settings = metadata.settings_from_parameters(text)
    assert settings == GenerationSettings(
        prompt="masterpiece, a castle", negative_prompt="ugly", steps=30, guidance=7.0, width=512, height=768, seed=42
    )
    assert metadata.parse_parameters(text)["fields"]["Lora hashes"] == "x: 1, y: 2"


def test_prompt_only_parameters():
    assert metadata.settings_from_parameters("just a prompt").prompt == "just a prompt"


def test_image_without_metadata_is_refused_clearly():
    with pytest.raises(ValueError, match="carries no generation settings"):
        metadata.read_png_metadata(Image.new("RGB", (4, 4)))
