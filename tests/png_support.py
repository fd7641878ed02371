"""PNGs for the tests, built by hand.

Hostile PNGs for "Load settings from a PNG", used by tests/unit/test_hostile_png.py (read directly) and
tests/app/test_hostile_png_app.py (dropped on the live app). They are built chunk by chunk here (PIL writes only
well-formed files): text before or after the image data, zlib bombs, cut-short files, bad checksums, text that is not
UTF-8, a 9000x9000 RGBA header. `CORPUS` pairs each with what loading it must give.

A1111-style PNGs for the History tests (tests/unit/test_history.py, tests/app/test_history_app.py).
"""

from __future__ import annotations

import functools
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from sd35ui.core import history, metadata

# --- hostile PNGs ---------------------------------------------------------------------------------------------------


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def text(key: str, value: str | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    return chunk(b"tEXt", key.encode("latin-1") + b"\0" + raw)


def itxt(key: str, value: str | bytes, compressed: bool = False) -> bytes:
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    raw = zlib.compress(raw) if compressed else raw
    return chunk(b"iTXt", key.encode("latin-1") + b"\0" + bytes([compressed, 0]) + b"\0\0" + raw)


def zeros_deflated(size: int, block: int = 2**20) -> bytes:
    """`size` zero bytes, zlib-compressed without ever holding them all (deflate packs 1032 to 1)."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(b"\0" * min(block, size - done)) for done in range(0, size, block)]
    return b"".join(parts) + packer.flush()


@functools.cache
def huge_idat(width: int, height: int) -> bytes:
    """The image data of a width x height RGBA PNG of zeros: 324 MB of pixels in 315 kB for 9000 x 9000."""
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + 4 * width)  # filter byte, then RGBA
    return b"".join(packer.compress(row) for _ in range(height)) + packer.flush()


def png(before: list[bytes] = (), after: list[bytes] = (), size: tuple[int, int] = (8, 8), end: bool = True) -> bytes:
    """An RGBA PNG of zeros: `before` chunks come before the image data (where PIL writes text), `after` after."""
    width, height = size
    idat = huge_idat(width, height)
    return (
        history.PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        + b"".join(before)
        + chunk(b"IDAT", idat)
        + b"".join(after)
        + (chunk(b"IEND", b"") if end else b"")
    )


def ours(**settings) -> str:
    return json.dumps({"settings": {"prompt": "a red circle", **settings}, "model": "tiny"})


A1111 = "a red circle\nSteps: 3, Sampler: Euler, CFG scale: 4.5, Seed: {seed}, Size: 64x64, Model: x"
LONG_LINE = "x\n" + "a" * 2**20  # 1 MB without a colon: the regex took 30 s a parse at 64 kB, and parsed twice
ALLOWED_LINE = "x\n" + "a" * (metadata.MAX_PARAMETERS_CHARS - 2)
QUOTES_LINE = "p\nSteps: 3, " + 'K: "a, ' * (metadata.MAX_PARAMETERS_CHARS // 8)  # unterminated quoted values
DEEP_JSON = "[" * 100_000
DEEP_EXTRA = '{"settings": {"prompt": "deep"}, "extra": ' + "[" * 400 + "]" * 400 + "}"  # parses; too deep to indent
DEEP_STEPS = '{"settings": {"prompt": "p", "steps": ' + "[" * 800 + "]" * 800 + "}}"
BOMB = 100 * 2**20  # a zTXt chunk that inflates to 100 MB of zeros


@functools.cache
def bomb_chunk() -> bytes:
    return chunk(b"zTXt", b"parameters\0\0" + zeros_deflated(BOMB))


def cut_short() -> bytes:
    whole = png(after=[text("parameters", A1111.format(seed=5))])
    return whole[: len(whole) - 12 - 20]  # IEND gone and the text chunk cut


def bad_crc(before: bool) -> bytes:
    broken = chunk(b"tEXt", b"parameters\0" + A1111.format(seed=5).encode(), crc=12345)
    return png(before=[broken]) if before else png(after=[broken])


# name -> (PNG bytes, what load_settings gives: a dict of values that must be loaded, or a message pattern)
CORPUS = {
    "1 MB line without a colon": (lambda: png([text("parameters", LONG_LINE)]), "too long: 1048578 characters"),
    "long line without a colon, allowed": (lambda: png([text("parameters", ALLOWED_LINE)]), {"prompt": ALLOWED_LINE}),
    "unterminated quoted values": (lambda: png([text("parameters", QUOTES_LINE)]), {"prompt": "p", "steps": 3}),
    "deeply nested JSON": (lambda: png([text("sd35ui", DEEP_JSON)]), "could not be understood.*nested too deeply"),
    "nested JSON in extra": (lambda: png([text("sd35ui", DEEP_EXTRA)]), {"prompt": "deep", "steps": 40}),
    "nested JSON as the steps": (lambda: png([text("sd35ui", DEEP_STEPS)]), {"prompt": "p", "steps": None}),
    "JSON seed 2**64": (lambda: png([text("sd35ui", ours(seed=2**64))]), {"prompt": "a red circle", "seed": None}),
    "JSON seed 10**30": (lambda: png([text("sd35ui", ours(seed=10**30))]), {"seed": None, "steps": 40}),
    "JSON guidance inf": (lambda: png([text("sd35ui", ours(guidance=1e999))]), {"guidance": None, "steps": 40}),
    "A1111 seed 2**64": (lambda: png([text("parameters", A1111.format(seed=2**64))]), {"seed": None, "steps": 3}),
    "A1111 seed 10**30": (lambda: png([text("parameters", A1111.format(seed=10**30))]), {"seed": None, "steps": 3}),
    "9000x9000 RGBA, text after the image data": (
        lambda: png(after=[text("parameters", A1111.format(seed=5))], size=(9000, 9000)),
        {"prompt": "a red circle", "seed": 5, "steps": 3},
    ),
    "compressed iTXt after the image data": (
        lambda: png(after=[itxt("sd35ui", ours(seed=9, prompt="ünïcode"), compressed=True)]),
        {"prompt": "ünïcode", "seed": 9},
    ),
    "5 MB tEXt after the image data": (
        lambda: png(after=[text("parameters", "a" * 5 * 2**20)]),
        "'parameters' text chunk is too long",
    ),
    "200,000 chunks": (lambda: png(after=[chunk(b"tIME", b"")] * 200_000), "more than 100000 chunks"),
    "zTXt bomb after the image data": (lambda: png(after=[bomb_chunk()]), "'parameters' text chunk is too long"),
    "zTXt bomb before the image data": (
        lambda: png([bomb_chunk()]),
        "could not be read: its text is too long",
    ),  # PIL's limit
    "cut short in a text chunk": (cut_short, "cut short"),
    "bad checksum after the image data": (lambda: bad_crc(before=False), "checksum does not match"),
    "bad checksum before the image data": (lambda: bad_crc(before=True), "damaged PNG.*checksum"),
    "chunk of impossible length": (lambda: png(after=[struct.pack(">I", 2**32 - 1) + b"tEXt"]), "impossible length"),
    "iTXt that is not UTF-8": (lambda: png(after=[itxt("parameters", b"\xff\xfe a cat")]), "not valid UTF-8"),
    "tEXt that is not UTF-8": (lambda: png([text("parameters", b"\xff\xfe a cat")]), {"prompt": "ÿþ a cat"}),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for i, (name, (build, _)) in enumerate(CORPUS.items()):
        paths[name] = folder / f"hostile-{i}.png"
        paths[name].write_bytes(build())
    return paths


def check_loaded(values: dict, expected: dict) -> None:
    for key, value in expected.items():
        if value is None:
            assert key not in values, key
        else:
            assert values[key] == value, key


# --- A1111-style PNGs -----------------------------------------------------------------------------------------------

A1111_TEXT = (
    "a photo of a cat, highly detailed\nNegative prompt: blurry, lowres\nSteps: 30, Sampler: DPM++ 2M Karras, "
    "CFG scale: 7, Seed: 3288463651, Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.6.0"
)


def a1111_png(path, text=A1111_TEXT):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (16, 16), "blue").save(path, pnginfo=info)
    return path


# --- forged sheet PNGs (Compare > "Load a sheet PNG"; tests/unit/test_sheet_loading.py) ------------------------------


def sheet_description() -> dict:
    """A sheet description as sd35ui writes it (`sheet.sheet_description`): 2 x 2 Guidance x Steps of 64 px on the
    tiny-random model, no cells; the forged sheets change parts of it."""
    from sd35ui.core.settings import GenerationSettings

    base = GenerationSettings(prompt="a red circle", width=64, height=64, steps=2, guidance=4.5, seed=3).to_dict()
    return {
        "script": "X/Y/Z plot",
        "model": "tiny-random",
        "x": {"type": "Guidance", "values": [1.0, 4.5]},
        "y": {"type": "Steps", "values": [2, 3]},
        "outer": [],
        "base": base,
        "options": {"show_times": False, "margin": 0, "legend": True, "swap": False},
        "cells": [],
    }


def forged_sheet(path: Path, description: object, size: tuple[int, int] = (8, 8)) -> Path:
    """A small PNG holding `description` (any JSON) as its sheet description, the way a hostile user makes one."""
    from sd35ui.core.sheet import SHEET_JSON_KEY

    info = PngImagePlugin.PngInfo()
    info.add_text(SHEET_JSON_KEY, json.dumps(description, separators=(",", ":")), zip=True)
    Image.new("RGB", size).save(path, pnginfo=info)
    return path


# --- PNGs whose text is HTML: messages quote it, and Gradio's toasts render messages as HTML -----------------------

PLANTED = "planted.invalid"  # a host nobody serves (RFC 2606): a request for it means the file's HTML was rendered
HTML_SAMPLER = f"<img src=//{PLANTED}/sampler>"
HTML_SCHEDULE = f"<a href=//{PLANTED}/schedule>Karras</a>"
HTML_AXIS = f"<form action=//{PLANTED}/axis><input name=password type=password><input type=submit></form>"
HTML_KEY = f"<img src=//{PLANTED}/key>"  # a settings key sd35ui does not have: named in "could not be understood"
# No "/" in a file's name, and Gradio's upload strips "<" and ">" from names: only a PNG put in the outputs folder
# by someone else keeps this name (History lists it); the image's URL is relative to the page.
PLANTED_NAME = "planted-name"  # a relative URL: the page's own host, path /planted-name
HTML_NAME = f"<img src={PLANTED_NAME}>.png"
HTML_TAGS = ("img", "a", "form", "input")  # what no toast may hold


def html_settings_png(path: Path, a1111: bool = False) -> Path:
    """A PNG whose settings name a sampler and a schedule written in HTML (ours as JSON, or A1111-style)."""
    if a1111:
        fields = f"Steps: 3, Sampler: {HTML_SAMPLER}, Schedule type: {HTML_SCHEDULE}"
        chunks = [text("parameters", f"a red circle\n{fields}")]
    else:
        chunks = [itxt(metadata.JSON_KEY, ours(sampler=HTML_SAMPLER, schedule=HTML_SCHEDULE))]
    path.write_bytes(png(chunks))
    return path


def html_key_png(path: Path) -> Path:
    """A PNG whose settings hold a key written in HTML: loading it fails, and the message quotes the key."""
    path.write_bytes(png([itxt(metadata.JSON_KEY, json.dumps({"settings": {"prompt": "p", HTML_KEY: 1}}))]))
    return path


def html_axis_sheet(path: Path) -> Path:
    """A sheet PNG whose X axis type is an HTML form with a password field."""
    return forged_sheet(path, {**sheet_description(), "x": {"type": HTML_AXIS, "values": [1.0, 4.5]}})


def combination_png(path: Path, **settings) -> Path:
    """A PNG of ours whose settings are each valid but do not go together (DPM++ 2M with the Karras schedule)."""
    values = {"sampler": "DPM++ 2M", "schedule": "Karras", "steps": 3, **settings}
    path.write_bytes(png([itxt(metadata.JSON_KEY, ours(**values))]))
    return path


OUTER_12 = [{"type": "Seed", "values": list(range(10))} for _ in range(12)]

# What a forged sheet's description changes, and what the refusal must say (plain text)
FORGED_SHEETS = {
    "12 outer axes x 10 values": (dict(outer=OUTER_12), "at most 2 outer axes"),
    "400,000 X values": (dict(x={"type": "Seed", "values": list(range(400_000))}), "400000 values; the limit is 64"),
    "64 x 50 x 3 x 3 cells": (
        dict(
            x={"type": "Seed", "values": list(range(64))},
            y={"type": "Steps", "values": list(range(1, 51))},
            outer=[{"type": "Guidance", "values": [1, 2, 3]}, {"type": "Shift", "values": [1, 2, 3]}],
        ),
        "This sheet has 28800 cells (64 x 50 x 3 x 3); the limit is 64",
    ),
    "a 30000x30000 base": (
        dict(base={**sheet_description()["base"], "width": 30000, "height": 30000}),
        "Size (width) is 30000",
    ),
    "a margin of 10^7": (dict(options={"margin": 10**7}), "margin between cells must be a whole number"),
    "no X axis": (dict(x=None), "has no X axis"),
    "an X axis that is text": (dict(x="Steps"), "is not a type with a list of values"),
    "values that are objects": (dict(x={"type": "Steps", "values": [{"a": 1}]}), "is not a number"),
    "a prompt value that is a number": (dict(x={"type": "Prompt S/R", "values": ["red", 5]}), "is not text"),
    "an unknown axis type": (dict(x={"type": "Colour", "values": [1]}), "unknown type"),
    "steps out of range": (dict(x={"type": "Steps", "values": [1, 999]}), "999 is outside the valid range"),
    "a base that is a list": (dict(base=[1, 2], fixed=[1]), "base settings are not a JSON object"),
    "outer axes that are an object": (dict(outer={"a": 1}), "outer axes are not a list"),
    "options that are text": (dict(options="wide"), "drawing options are not a JSON object"),
    "a bad base setting": (dict(base={**sheet_description()["base"], "steps": "many"}), "Steps"),
    "Prompt S/R text not in the prompt": (dict(x={"type": "Prompt S/R", "values": ["wolf", "dog"]}), "wolf"),
}
