"""Reliability and security without a server or a model: results written atomically (writers killed at random
moments leave only complete PNGs), and the --auth and host settings parsed and warned about. The same themes through
the real app are in tests/app/test_reliability.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from sd35ui.core import history, metadata

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


# 1. Nothing lost ---------------------------------------------------------------------------------------------------


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


# 5. Access ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("", None),
        ("alice:s3cret", ("alice", "s3cret")),
        ("alice:pa:ss:word", ("alice", "pa:ss:word")),
        (" alice :x", ("alice", "x")),
    ],
)
def test_auth_is_parsed_from_user_colon_password(value, expected):
    from sd35ui.app.access import parse_auth

    assert parse_auth(value) == expected


@pytest.mark.parametrize("value", ["alice", ":s3cret", "alice:", "a:b\nc", "a:" + "x" * 300])
def test_bad_auth_values_are_refused_with_the_expected_form(value):
    from sd35ui.app.access import parse_auth

    with pytest.raises(ValueError, match="--auth"):
        parse_auth(value)


def test_auth_comes_from_the_flag_or_the_environment_and_the_host_defaults_to_this_machine():
    from sd35ui.app.access import AUTH_ENV, auth_from, default_host

    assert auth_from(None, {AUTH_ENV: "bob:pw"}) == ("bob", "pw")
    assert auth_from("alice:x", {AUTH_ENV: "bob:pw"}) == ("alice", "x")
    assert auth_from(None, {}) is None
    assert default_host({}) == "127.0.0.1"
    assert default_host({"GRADIO_SERVER_NAME": "0.0.0.0"}) == "0.0.0.0"
    assert default_host({"SD35UI_HOST": "::1", "GRADIO_SERVER_NAME": "0.0.0.0"}) == "::1"


def test_exposing_the_app_without_a_login_is_warned_about():
    from sd35ui.app.access import exposure_warnings

    assert exposure_warnings("127.0.0.1", share=False, auth=None) == []
    assert exposure_warnings("0.0.0.0", share=True, auth=("a", "b")) == []
    share, network = exposure_warnings("0.0.0.0", share=True, auth=None)
    assert "--share without --auth" in share and "anyone who gets the public link" in share
    assert "0.0.0.0 without --auth" in network
    assert exposure_warnings("localhost", share=True, auth=None) == [share]
