"""A full disk (or any failed write) while saving a sheet, its explorer page or its zip is a titled message that
says what was not saved and what to do (not a bare "Generation failed: OSError: [Errno 28]"). The
disk is made full where the operating system reports it: the write itself raises ENOSPC."""

from __future__ import annotations

import errno
import os

import pytest

from sd35ui.core import sheet, storage
from sd35ui.core.settings import GenerationSettings

BASE = GenerationSettings(prompt="a red circle", width=64, height=64, steps=2, guidance=4.5, seed=3)


@pytest.mark.parametrize("suffix, what", [(".png", "The sheet"), (".html", "explorer page"), (".zip", "zip")])
def test_a_full_disk_names_the_file_not_saved_and_what_to_do(tmp_path, monkeypatch, suffix, what):
    from sd35ui.core.pipeline import model_spec

    spec = sheet.make_spec(BASE, "Guidance", "1, 4.5", model=model_spec("tiny-random"))
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(storage.SaveError) as error:
        sheet.save_sheet(sheet.SheetResult(spec, "tiny-random", stopped=True), tmp_path)
    message = str(error.value)
    assert what in message and "could not be saved as" in message and "No space left on device" in message
    assert "Free disk space" in message and str(tmp_path) not in message
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.rglob("*"))  # no half-written file left
