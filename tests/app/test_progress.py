"""Progress bars through the real app on the tiny model: a sheet's bar counts what its step callbacks count, every
iteration of every cell's denoising loop (Heun makes 2n - 1 for n steps: `generate.loop_length`), so it ends full
and never runs past its total."""

from __future__ import annotations

import time

from app_support import SHEET
from gradio_client import Client

from sd35ui.core.generate import loop_length
from sd35ui.core.settings import GenerationSettings


def progress_seen(job, timeout: float = 120) -> list[tuple[int, int]]:
    """The (index, length) of every progress update the job's status showed while it ran."""
    seen = []
    deadline = time.monotonic() + timeout
    while not job.done():
        assert time.monotonic() < deadline, job.status()
        for unit in job.status().progress_data or []:
            if unit.length is not None:
                seen.append((unit.index, unit.length))
        time.sleep(0.005)
    return seen


def test_a_sheets_progress_total_counts_heuns_two_model_calls_a_step(app_server, tiny_spec):
    app, _ = app_server
    steps, samplers = 12, ("Euler", "Heun", "DPM++ 2M")
    sheet = {**SHEET, "x_axis": "Sampler", "x_values": ", ".join(samplers), "y_axis": "None", "y_values": ""}
    sheet.update(steps=steps, resume=False)  # resume=False: every cell is made, none read back
    job = Client(app.local_url, verbose=False).submit(**sheet, api_name="/contact_sheet")
    seen = progress_seen(job)
    _, cells, status, *_ = job.result(timeout=120)
    assert len(cells) == 3 and "stopped" not in status, status
    base = GenerationSettings.validated(tiny_spec, prompt="p", steps=steps)
    total = sum(loop_length(base.replace(sampler=name)) for name in samplers)
    assert total == steps + (2 * steps - 1) + steps
    assert seen, "no progress was shown"
    assert {length for _, length in seen} == {total}, "the bar's total is every loop iteration of the sheet"
    assert all(index <= length for index, length in seen), "the bar never runs past its total"
