import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sd35ui.core import metadata, storage
from sd35ui.core.settings import GenerationSettings

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
        "a cat\nSteps: 40, Sampler: Euler (flow matching), CFG scale: 4.5, Seed: 123, Size: 1024x1024, Shift: 3, "
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
        prompt="masterpiece, a castle",
        negative_prompt="ugly",
        steps=30,
        guidance=7.0,
        width=512,
        height=768,
        seed=42,
        sampler="DPM++ 2M",
        schedule="Karras",  # read as written: generating says that DPM++ 2M takes only the default schedule
    )
    assert metadata.parse_parameters(text)["fields"]["Lora hashes"] == "x: 1, y: 2"


def test_prompt_only_parameters():
    assert metadata.settings_from_parameters("just a prompt").prompt == "just a prompt"


def test_image_without_metadata_is_refused_clearly():
    with pytest.raises(ValueError, match="carries no generation settings"):
        metadata.read_png_metadata(Image.new("RGB", (4, 4)))


def test_too_long_settings_text_is_refused_with_its_length():
    limit = metadata.MAX_PARAMETERS_CHARS
    text = "x\n" + "a" * limit  # one long line without a colon: a regex search over it was quadratic
    with pytest.raises(ValueError, match=f"too long: {limit + 2} characters; the limit is {limit}"):
        metadata.parse_parameters(text)
    image = Image.new("RGB", (4, 4))
    image.info[metadata.JSON_KEY] = "[" * (metadata.MAX_JSON_CHARS + 1)
    with pytest.raises(metadata.TextTooLong, match=f"'sd35ui' chunk\\) is too long: {metadata.MAX_JSON_CHARS + 1}"):
        metadata.read_png_metadata(image)


def test_long_lines_within_the_limit_parse_to_the_right_result():
    limit = metadata.MAX_PARAMETERS_CHARS
    colonless = "x\n" + "a" * (limit - 2)
    assert metadata.parse_parameters(colonless) == {"prompt": colonless, "negative_prompt": "", "fields": {}}
    count = limit // 20  # "Key 12345: 12345, " is at most 18 characters
    many = "p\nSteps: 3, " + ", ".join(f"Key {i}: {i}" for i in range(count))
    fields = metadata.parse_parameters(many)["fields"]
    assert len(fields) == count + 1 and fields["Steps"] == "3" and fields[f"Key {count - 1}"] == str(count - 1)
    unterminated = "p\nSteps: 3, " + 'K: "a, ' * (limit // 8)  # each quote ends at the next field's: not quoted
    assert metadata.parse_parameters(unterminated)["fields"] == {"Steps": "3", "K": '"a'}


@pytest.mark.parametrize(
    "line, fields",
    [
        ('Steps: 1, Lora: "a \\" b, c: d", Next: 2', {"Steps": "1", "Lora": 'a " b, c: d', "Next": "2"}),
        ('Steps: 1, Path: "C:\\\\dir\\\\", Next: 2', {"Steps": "1", "Path": "C:\\dir\\", "Next": "2"}),
        ('Steps: 1, Odd: "a"b, c", Next: 2', {"Steps": "1", "Odd": '"a"b'}),
        ('Steps: 1, Open: "abc', {"Steps": "1", "Open": '"abc'}),
        ("Steps: 1, , After: 2", {"Steps": "1"}),  # reading stops at text that is not a `key:`
        ("Steps:5,Size:64x64", {"Steps": "5", "Size": "64x64"}),
    ],
)
def test_quoted_and_odd_fields(line, fields):
    assert metadata.parse_parameters("p\n" + line)["fields"] == fields


# The field regex the parser replaced (quadratic when searched with finditer): the oracle for short lines.
_OLD_FIELD = re.compile(r'\s*([\w][\w \-/()]*?):\s*("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)')


def _old_fields(line):
    fields, pos = {}, 0
    for match in _OLD_FIELD.finditer(line):
        if match.start() != pos:
            break
        key, value = match.group(1).strip(), match.group(2).strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        fields[key] = value
        pos = match.end()
    return fields


PIECES = ["a", " ", ",", ":", '"', "\\", "K: ", 'K: "', '", ', '\\"', "\\\\", "é\t(x)-/"]


@settings(max_examples=3000, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join), st.booleans())
def test_field_parser_reads_what_the_old_regex_read(rest, steps_first):
    line = "Steps: 1, " + rest if steps_first else rest
    fields = _old_fields(line)
    expected = fields if "Steps" in fields else {}
    assert metadata.parse_parameters("p\n" + line)["fields"] == expected
