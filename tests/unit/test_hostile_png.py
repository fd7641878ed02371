"""Hostile PNGs for "Load settings from a PNG", read without a server: each gives loaded settings or a
clear message, at once, without decoding pixels or inflating compressed text without bound. The PNGs are built
chunk by chunk in tests/png_support.py; tests/app/test_hostile_png_app.py drops them on the live app."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import png_support
import pytest
from png_support import CORPUS, check_loaded, chunk, itxt, png, text

from sd35ui.core import history

corpus = png_support.corpus  # the shared pytest fixture


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CORPUS)
def test_hostile_png_loads_or_gets_a_clear_message(corpus, name):
    expected = CORPUS[name][1]
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected) as caught:
            history.load_settings(corpus[name])
        assert "recursion" not in str(caught.value) and len(str(caught.value)) < 400
        return
    loaded = history.load_settings(corpus[name])
    check_loaded(loaded.values, expected)
    for key, value in expected.items():
        if value is None:  # left out with a note, so the Generate tab keeps its own value
            assert any(key in note for note in loaded.notes), loaded.notes


PEAK_MEMORY = """
import resource, sys
from sd35ui.core import history
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loaded = history.load_settings(sys.argv[1])
print(loaded.values["seed"], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.timeout(120)
def test_text_after_the_image_data_is_read_without_decoding_the_pixels(corpus):
    """9000x9000 RGBA is 324 MB of pixels (PIL reached text stored after them only by decoding them all)."""
    path = corpus["9000x9000 RGBA, text after the image data"]
    assert path.stat().st_size < 400_000
    command = [sys.executable, "-c", PEAK_MEMORY, str(path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert run.returncode == 0, run.stderr
    seed, grown_mb = map(int, run.stdout.split())
    assert seed == 5
    assert grown_mb < 32, f"reading the settings grew the process by {grown_mb} MB"


def test_text_chunks_are_read_wherever_they_lie(tmp_path):
    before, after = text("a", "1"), itxt("b", "2", compressed=True)
    path = tmp_path / "x.png"
    path.write_bytes(png([before, chunk(b"zTXt", b"c\0\0" + zlib.compress(b"3"))], [after]))
    with path.open("rb") as f:
        f.seek(len(history.PNG_SIGNATURE))
        assert history.png_text_chunks(f) == ({"a": "1", "c": "3", "b": "2"}, [])
