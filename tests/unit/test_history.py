"""History: listing the outputs folder, thumbnails, and loading settings from our PNGs and A1111-style ones (no server;
the /history and /load_settings API of the live app are tested in tests/app/test_history_app.py)."""

import json
import os
import struct
import time
import zlib

import pytest
from PIL import Image, PngImagePlugin
from png_support import A1111_TEXT, a1111_png

from sd35ui.app.history_tab import describe, show_page
from sd35ui.core import history, metadata, storage
from sd35ui.core.settings import PARAMS, SD35_MEDIUM, GenerationSettings

OURS = GenerationSettings(
    prompt="a fox, in snow: watercolor",
    negative_prompt="blurry",
    steps=28,
    guidance=5.5,
    width=832,
    height=1216,
    seed=7,
)


def save(path, settings=OURS, size=(32, 32), color="red"):
    return storage.save_png(Image.new("RGB", size, color), metadata.png_info(settings, "tiny"), path)


def test_results_are_listed_newest_first_and_partial_files_never(tmp_path):
    old = save(tmp_path / "2025-12-31" / "235959-image-1-aaaaaa.png")
    sheet = save(tmp_path / "2026-01-02" / "080000-sheet-3-bbbbbb.png")
    cell = save(tmp_path / "2026-01-02" / "080000-sheet-3-bbbbbb-r1c2.png")
    new = save(tmp_path / "2026-01-02" / "093000-image-2-cccccc.png")
    (tmp_path / "2026-01-02" / ".tmp-abc.png").write_bytes(b"\x89PNG half written")
    (tmp_path / "2026-01-02" / "093000-sheet-2-cccccc.zip").write_bytes(b"zip")
    save(tmp_path / history.THUMBS_DIR / "2026-01-02" / "x.png")
    (tmp_path / "link.png").symlink_to(new)

    entries = history.list_results(tmp_path)
    assert [e.path for e in entries] == [new, sheet, old]
    assert [e.kind for e in entries] == ["image", "sheet", "image"]
    assert [e.path for e in history.list_results(tmp_path, include_cells=True)] == [new, cell, sheet, old]


def test_same_second_and_foreign_names_order_by_modification_time(tmp_path):
    first = save(tmp_path / "2026-01-02" / "100000-image-1-aaaaaa.png")
    second = save(tmp_path / "2026-01-02" / "100000-image-2-ffffff.png")
    foreign = save(tmp_path / "my picture.png")
    now = time.time()
    os.utime(first, (now - 10, now - 10))
    os.utime(second, (now - 5, now - 5))
    os.utime(foreign, (now, now))
    assert [e.path for e in history.list_results(tmp_path)][-2:] == [second, first]
    assert history.list_results(tmp_path)[0].kind == "file"


def test_missing_outputs_folder_is_an_empty_history(tmp_path):
    assert history.list_results(tmp_path / "nothing") == []
    items, paths, text, number = show_page(tmp_path / "nothing", 0)
    assert (items, paths, number) == ([], [], 0) and "No results yet" in text


def test_pages_are_clamped_and_described(tmp_path):
    entries = [history.Entry(tmp_path / f"{i}.png", history._dt.datetime(2026, 1, 1), "image") for i in range(5)]
    page = history.page_of(entries, 7, size=2)
    assert page.number == 2 and len(page.entries) == 1 and page.pages == 3
    assert page.describe() == "5–5 of 5, newest first · page 3 of 3"
    assert history.page_of(entries, -3, size=2).number == 0


def test_thumbnails_are_small_made_once_and_remade_when_the_image_changes(tmp_path):
    path = save(tmp_path / "2026-01-02" / "100000-image-1-aaaaaa.png", size=(1024, 512))
    thumb = history.thumbnail(history.list_results(tmp_path)[0], tmp_path)
    assert thumb.parent == tmp_path / history.THUMBS_DIR / "2026-01-02"
    with Image.open(thumb) as image:
        assert image.size == (history.THUMB_SIZE, history.THUMB_SIZE // 2)
    made = thumb.stat().st_mtime_ns
    assert history.thumbnail(path, tmp_path).stat().st_mtime_ns == made
    later = time.time() + 5
    save(path, color="green", size=(64, 64))
    os.utime(path, (later, later))
    with Image.open(history.thumbnail(path, tmp_path)) as image:
        assert image.size == (64, 64)


def test_a_damaged_file_is_counted_not_shown(tmp_path):
    good = save(tmp_path / "2026-01-02" / "100000-image-1-aaaaaa.png")
    (tmp_path / "2026-01-02" / "110000-image-2-bbbbbb.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    items, paths, text, _ = show_page(tmp_path, 0)
    assert paths == [str(good)] and len(items) == 1
    assert "2 of 2" in text and "1 file(s) on this page could not be read" in text
    assert items[0][1].endswith("a fox, in snow: watercolor")


def test_settings_from_our_png_fill_every_generate_input(tmp_path):
    loaded = history.load_settings(save(tmp_path / "a.png"), SD35_MEDIUM)
    assert loaded.source == metadata.JSON_KEY and loaded.model == "tiny" and loaded.notes == []
    assert loaded.values == {
        "prompt": OURS.prompt,
        "negative_prompt": "blurry",
        "steps": 28,
        "guidance": 5.5,
        "width": 832,
        "height": 1216,
        "seed": 7,
        "randomize_seed": False,
        "shift": 3.0,
        "sampler": "Euler",
        "schedule": "Default",
        "slg_scale": 0.0,
        "skip_layers": "",
        "slg_start": 0.01,
        "slg_stop": 0.2,
        "t5_prompt": "On",
    }
    assert set(loaded.values) == set(history.GENERATE_KEYS)


def test_settings_from_an_a1111_png_with_notes_on_what_this_model_cannot_use(tmp_path):
    loaded = history.load_settings(a1111_png(tmp_path / "sdxl.png"), SD35_MEDIUM)
    assert loaded.source == metadata.PARAMETERS_KEY and loaded.model == "sd_xl_base_1.0"
    assert loaded.values == {  # A1111's seed is outside this app's range: left out, so the Generate tab keeps its own
        "prompt": "a photo of a cat, highly detailed",
        "negative_prompt": "blurry, lowres",
        "steps": 30,
        "guidance": 7.0,
        "width": 832,
        "height": 1216,
    }
    assert loaded.parameters == A1111_TEXT
    assert loaded.notes == [
        "The PNG's seed, 3288463651, is outside the valid range 0 to 2147483647; it was left unchanged.",
        "The PNG's sampler, 'DPM++ 2M Karras', is not one this app has (Euler, Heun, DPM++ 2M); it was left "
        "unchanged.",
    ]


def test_fields_missing_from_a1111_text_are_left_out(tmp_path):
    loaded = history.load_settings(a1111_png(tmp_path / "p.png", "just a prompt\nSteps: 20, Sampler: Euler"))
    assert loaded.values == {"prompt": "just a prompt", "negative_prompt": "", "steps": 20, "sampler": "Euler"}


def test_sizes_another_model_cannot_make_are_noted(tmp_path, tiny_spec):
    loaded = history.load_settings(a1111_png(tmp_path / "p.png"), tiny_spec)
    assert any("Width" in n or "width" in n for n in loaded.notes)
    assert any("height" in n.lower() for n in loaded.notes)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width, height):
    """A PNG that claims width x height pixels (a decompression bomb) but holds almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xd8\xff\xe0 a JPEG", "not a PNG"),
        (b"", "not a PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "damaged"),
        (png_with_header(12000, 12000), "megapixels"),  # under PIL's own limit, over ours
        (png_with_header(40000, 40000), "megapixels"),  # over PIL's too
    ],
)
def test_files_that_are_not_usable_pngs_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        history.load_settings(path)


def test_png_without_settings_and_with_broken_settings(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="carries no generation settings"):
        history.load_settings(tmp_path / "plain.png")
    info = PngImagePlugin.PngInfo()
    info.add_text(metadata.JSON_KEY, "{not json")
    Image.new("RGB", (8, 8)).save(tmp_path / "broken.png", pnginfo=info)
    with pytest.raises(ValueError, match="could not be understood"):
        history.load_settings(tmp_path / "broken.png")


def test_wrongly_typed_values_are_left_unchanged_with_a_note(tmp_path):
    info = PngImagePlugin.PngInfo()
    payload = {"settings": {"prompt": "ok", "steps": "many", "guidance": float("nan"), "seed": True}, "model": 3}
    info.add_text(metadata.JSON_KEY, json.dumps(payload))
    Image.new("RGB", (8, 8)).save(tmp_path / "odd.png", pnginfo=info)
    loaded = history.load_settings(tmp_path / "odd.png")
    assert "steps" not in loaded.values and "guidance" not in loaded.values and "seed" not in loaded.values
    assert loaded.values["prompt"] == "ok" and loaded.model is None
    assert len([n for n in loaded.notes if "not a number" in n]) == 3


def test_too_big_a_file_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "MAX_PNG_BYTES", 100)
    with pytest.raises(ValueError, match="are not read"):
        history.load_settings(save(tmp_path / "a.png", size=(64, 64)))


def test_stale_temp_files_are_removed_and_fresh_ones_kept(tmp_path):
    stale, fresh = tmp_path / "d" / ".tmp-old.png", tmp_path / "d" / ".tmp-new.png"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * history.STALE_TEMP_S,) * 2)
    assert history.remove_stale_temp_files(tmp_path) == [stale]
    assert fresh.exists() and not stale.exists()


def test_describe_shows_only_files_inside_the_outputs_folder(tmp_path):
    inside = save(tmp_path / "out" / "2026-01-02" / "100000-image-7-aaaaaa.png")
    outside = save(tmp_path / "secret.png")
    image, text = describe(tmp_path / "out", str(inside), SD35_MEDIUM)
    assert image == str(inside) and "Seed: 7" in text and "File: 2026-01-02/100000-image-7-aaaaaa.png" in text
    for path in (str(outside), str(tmp_path / "out" / ".." / "secret.png"), "/etc/passwd", ""):
        assert describe(tmp_path / "out", path, SD35_MEDIUM) == (None, "")


def test_numbers_outside_this_apps_ranges_are_left_out_with_a_note(tmp_path):
    info = PngImagePlugin.PngInfo()
    payload = {"settings": {"prompt": "ok", "steps": 80, "guidance": 1e999, "width": 1000, "height": 10**30}}
    info.add_text(metadata.JSON_KEY, json.dumps({**payload, "model": "x"}))
    Image.new("RGB", (8, 8)).save(tmp_path / "odd.png", pnginfo=info)
    loaded = history.load_settings(tmp_path / "odd.png")
    # seed is None in the file: not loaded either; settings added since (shift, ...) are not in the file: the
    # defaults that made it (sd35ui 0.1's: the model's own)
    later = {p.name: p.default_for(SD35_MEDIUM) for p in PARAMS if p.api_tail}
    assert loaded.values == {"prompt": "ok", "negative_prompt": "", **later}
    assert later["shift"] == 3.0 and later["slg_scale"] == 0
    assert loaded.notes == [
        "The PNG's steps, 80, is outside the valid range 1 to 50; it was left unchanged.",
        "The PNG's guidance is inf, not a number; it was left unchanged.",
        "Width must be a multiple of 16, got 1000. Use 992 or 1008 instead (valid range 256 to 1440 for "
        "stabilityai/stable-diffusion-3.5-medium). The PNG's width was left unchanged.",
        "The PNG's height, 1000000000000000000000000000000, is outside the valid range 256 to 1440 for "
        "stabilityai/stable-diffusion-3.5-medium; it was left unchanged.",
    ]
