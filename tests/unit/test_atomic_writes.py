"""Results written atomically, without a server or a model: a writer killed between writing the bytes and renaming
them into place leaves the old file whole, and writers killed at random moments leave only complete PNGs; the
leftover temporary files are never listed and are cleaned up (`storage.atomic_write_bytes`, `storage.save_png`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from PIL import Image

from sd35ui.core import history, metadata

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from PIL import Image
    from sd35ui.core import metadata, storage
    from sd35ui.core.settings import GenerationSettings

    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "block":  # stop between writing the bytes and renaming them into place
        real_fsync = os.fsync
        def fsync(fd):
            real_fsync(fd)
            print("written", flush=True)
            time.sleep(120)
        os.fsync = fsync
        storage.atomic_write_bytes(target, b"new" * 1_000_000)
    else:  # write real results as fast as possible until killed
        i = 0
        while True:
            name = f"{os.getpid()}-{i:05d}"
            s = GenerationSettings(prompt=f"image {name}", steps=2, guidance=2, width=64, height=64, seed=i)
            image = Image.effect_noise((256, 256), 64).convert("RGB")
            storage.save_png(image, metadata.png_info(s, "tiny"), target / f"{name}.png")
            print(i, flush=True)
            i += 1
    """
)


def test_a_writer_killed_before_the_rename_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "2026-01-02" / "100000-image-1-aaaaaa.png"
    target.parent.mkdir()
    target.write_bytes(b"old complete file")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, "block", str(target)], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert writer.stdout.readline().strip() == "written"
        temp = [p for p in target.parent.iterdir() if p.name.startswith(history.TEMP_PREFIX)]
        assert len(temp) == 1 and temp[0].stat().st_size == 3_000_000  # all bytes on disk, not yet in place
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert target.read_bytes() == b"old complete file"
    assert [e.path for e in history.list_results(tmp_path)] == [target]  # the leftover is never listed
    assert history.remove_stale_temp_files(tmp_path, min_age_s=0) == temp


def test_writers_killed_at_random_moments_leave_only_complete_pngs(tmp_path):
    written = 0
    for delay in (0.7, 1.1, 1.6):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, "loop", str(tmp_path)], stdout=subprocess.PIPE, text=True, env=ENV
        )
        writer.stdout.readline()  # started writing
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        pngs = [p for p in tmp_path.iterdir() if not p.name.startswith(history.TEMP_PREFIX)]
        assert len(pngs) > written
        written = len(pngs)
    assert sorted(e.path for e in history.list_results(tmp_path)) == sorted(pngs)
    for path in pngs:
        with Image.open(path) as image:
            image.load()  # every byte is there: a truncated PNG raises here
            assert metadata.read_png_metadata(image)["settings"].prompt == f"image {path.stem}"
