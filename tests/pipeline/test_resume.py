"""Resume on the real tiny pipeline: a sheet continues from the cells saved earlier with the same settings, model
and recipe. A saved cell is used only when it is that cell's picture (its size, decodable, a regular file inside the
outputs folder); anything else is made again, and a retry after a bad cell works. Reused cells are linked beside the
new sheet, never written again, and the scan survives files that vanish or point elsewhere."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from png_support import chunk, png

from sd35ui.core import cells, explore, sheet
from sd35ui.core.history import PNG_SIGNATURE
from sd35ui.core.pipeline import get_pipeline, model_spec
from sd35ui.core.settings import GenerationSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=32, height=32, steps=2, guidance=4.5, seed=5)


@pytest.fixture(scope="module")
def pipe(tiny_options):
    return get_pipeline(tiny_options)


@pytest.fixture(scope="module")
def spec():
    return sheet.make_spec(BASE, "Steps", "1, 2", "Guidance", "1, 4.5", model=TINY)


@pytest.fixture(scope="module")
def fresh(pipe, spec):
    """The sheet made from nothing: what every resumed sheet must equal."""
    return sheet.run_sheet(pipe, spec)


def run_saving(pipe, spec, sheet_path, reuse=None, stop_after=None):
    """A sheet the way the app makes it: each cell saved beside `sheet_path` as it comes (`sheet.save_cell`)."""
    stop = threading.Event()
    made = []

    def keep(done):
        made.append(sheet.save_cell(done, sheet_path))
        if stop_after is not None and len(made) == stop_after:
            stop.set()

    return sheet.run_sheet(pipe, spec, stop=stop, on_cell=keep, reuse=reuse), made


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def planted(path, payload_from, size):
    """A PNG of `size` carrying the metadata of the saved cell `payload_from`: matches its key, is not its picture."""
    info = PngImagePlugin.PngInfo()
    with Image.open(payload_from) as saved:
        for key, value in saved.text.items():
            info.add_text(key, value)
    Image.new("RGB", size, "white").save(path, pnginfo=info)
    return path


def test_a_planted_cell_of_another_size_is_made_again_and_a_retry_works(pipe, spec, fresh, tmp_path):
    day = tmp_path / "day"
    _, made = run_saving(pipe, spec, day / "a.png", stop_after=1)
    first_cell = made[0]
    planted(first_cell, first_cell, (64, 64))  # the newest match for cell 1, now 64 px: not that cell
    result, _ = run_saving(pipe, spec, day / "b.png", reuse=explore.reusable_cells(tmp_path))
    assert result.complete and result.reused == 0
    assert np.array_equal(pixels(result.image()), pixels(fresh.image()))
    first_cell.unlink()
    again, _ = run_saving(pipe, spec, day / "c.png", reuse=explore.reusable_cells(tmp_path))
    assert again.complete and again.reused == 4  # b's cells, each made right
    assert np.array_equal(pixels(again.image()), pixels(fresh.image()))


def test_reused_cells_are_linked_not_written_again(pipe, spec, tmp_path):
    day = tmp_path / "day"
    _, made = run_saving(pipe, spec, day / "a.png", stop_after=2)
    before = {path: os.stat(path) for path in made}
    result, linked = run_saving(pipe, spec, day / "b.png", reuse=explore.reusable_cells(tmp_path))
    assert result.complete and result.reused == 2
    reused = [done for done in result.cells if done.reused]
    for done, path in zip(reused, linked):
        source = before[done.source]
        assert os.stat(path).st_ino == source.st_ino and os.stat(path).st_mtime_ns == source.st_mtime_ns
    # Resumed twice more: still the four distinct cells' bytes on disk, however many sheets name them.
    for name in ("c.png", "d.png"):
        run_saving(pipe, spec, day / name, reuse=explore.reusable_cells(tmp_path))
    inodes = {os.stat(p).st_ino for p in day.glob("*-r*c*.png")}
    assert len(inodes) == 4


def cell_chunks(saved_cell) -> list[bytes]:
    with Image.open(saved_cell) as image:
        return [
            chunk(b"tEXt", key.encode() + b"\0" + value.encode("latin-1", "replace"))
            for key, value in image.text.items()
        ]


@pytest.mark.parametrize(
    "damage",
    [
        "a 20000x20000 header",  # Pillow: DecompressionBombError before a pixel is read
        "a zTXt chunk of 2 MB",  # Pillow: ValueError, decompressed past its text-chunk limit
        "cut short",
        "not a PNG",
    ],
)
def test_a_damaged_saved_cell_is_made_again(pipe, spec, fresh, tmp_path, damage):
    day = tmp_path / "day"
    _, made = run_saving(pipe, spec, day / "a.png", stop_after=1)
    target = made[0]
    texts = cell_chunks(target)
    if damage == "a 20000x20000 header":
        header = chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        target.write_bytes(PNG_SIGNATURE + header + b"".join(texts) + chunk(b"IDAT", b"x") + chunk(b"IEND", b""))
    elif damage == "a zTXt chunk of 2 MB":
        bomb = chunk(b"zTXt", b"junk\0\0" + zlib.compress(b"x" * 2_000_000))
        target.write_bytes(png(before=[*texts, bomb], size=(32, 32)))
    elif damage == "cut short":
        target.write_bytes(target.read_bytes()[:-200])
    else:
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(texts))
    result, _ = run_saving(pipe, spec, day / "b.png", reuse=explore.reusable_cells(tmp_path))
    assert result.complete and not any(done.reused for done in result.cells if done.cell.index == 0)
    assert np.array_equal(pixels(result.image()), pixels(fresh.image()))


def test_the_scan_passes_over_symlinks_and_files_that_vanish(pipe, spec, tmp_path):
    outputs, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    _, made = run_saving(pipe, spec, elsewhere / "day" / "a.png")  # four good cells, outside the outputs
    (outputs / "day").mkdir(parents=True)
    (outputs / "day" / "1-sheet-r1c1.png").symlink_to(made[0])  # a link to a file outside
    (outputs / "linked").symlink_to(elsewhere / "day")  # a linked folder
    (outputs / "day" / "2-sheet-r1c2.png").symlink_to(tmp_path / "missing.png")  # dangling: stat() fails
    (outputs / "day" / ".tmp-abcr1c2.png").write_bytes(made[1].read_bytes())  # another job's temporary file
    assert explore.reusable_cells(outputs) == {}
    result, written = run_saving(pipe, spec, outputs / "day" / "b.png", reuse=explore.reusable_cells(outputs))
    assert result.reused == 0 and result.complete
    assert not any(path.is_symlink() for path in written)  # nothing from outside was copied in


def test_a_cell_deleted_after_the_scan_is_made_again(pipe, spec, fresh, tmp_path):
    _, made = run_saving(pipe, spec, tmp_path / "day" / "a.png")
    reuse = explore.reusable_cells(tmp_path)
    made[0].unlink()
    result, _ = run_saving(pipe, spec, tmp_path / "day" / "b.png", reuse=reuse)
    assert result.complete and result.reused == 3
    assert np.array_equal(pixels(result.image()), pixels(fresh.image()))


# --- The index: resume looks cells up instead of reading every PNG ---------------------------------------------------


@pytest.fixture
def reads(monkeypatch):
    """The PNG files whose text chunks are read (every resume check reads one)."""
    from sd35ui.core import history

    read: list = []
    real = history.read_text_chunks
    monkeypatch.setattr(history, "read_text_chunks", lambda path: read.append(Path(path).name) or real(path))
    return read


def test_resume_reads_only_the_cells_it_reuses(pipe, spec, tmp_path, reads):
    day = tmp_path / "day"
    other = sheet.make_spec(BASE.replace(seed=6), "Steps", "1, 2", "Guidance", "1, 4.5", model=TINY)
    run_saving(pipe, other, day / "other.png")  # four cells of another sheet in the same folder
    run_saving(pipe, spec, day / "a.png", stop_after=2)
    reads.clear()
    result, _ = run_saving(pipe, spec, day / "b.png", reuse=explore.reusable_cells(tmp_path))
    assert result.reused == 2
    assert sorted(reads) == sorted(done.source.name for done in result.cells if done.reused)  # 2 of 6 PNGs read


def test_cells_saved_before_the_index_existed_are_still_reused(pipe, spec, tmp_path):
    day = tmp_path / "day"
    _, made = run_saving(pipe, spec, day / "a.png", stop_after=2)
    (day / cells.INDEX_NAME).unlink()  # a folder of the previous version's cells: no index
    run_saving(pipe, other_spec(), day / "c.png")  # this version saves new cells there: the old ones are indexed too
    result, _ = run_saving(pipe, spec, day / "b.png", reuse=explore.reusable_cells(tmp_path))
    assert result.reused == 2 and {done.source for done in result.cells if done.reused} == set(made)


def other_spec():
    return sheet.make_spec(BASE.replace(seed=7), "Steps", "1", None, model=TINY)


def test_a_stale_or_damaged_index_never_hands_out_a_wrong_cell(pipe, spec, fresh, tmp_path):
    day = tmp_path / "day"
    _, made = run_saving(pipe, spec, day / "a.png")
    _, (foreign,) = run_saving(pipe, other_spec(), day / "c.png")
    made[0].write_bytes(foreign.read_bytes())  # overwritten by another cell: its index line is stale
    with open(day / cells.INDEX_NAME, "a") as index:
        index.write('{"key": "cut short\n[1, 2]\n{"key": 5, "file": "../../etc/passwd"}\n')
    result, _ = run_saving(pipe, spec, day / "b.png", reuse=explore.reusable_cells(tmp_path))
    assert result.complete and result.reused == 3
    assert np.array_equal(pixels(result.image()), pixels(fresh.image()))
