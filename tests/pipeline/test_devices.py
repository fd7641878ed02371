"""A sheet's cells spread over several pipelines (`sd35ui.core.devices`): two CPU workers on the tiny random SD3
pipeline (real classes, 32x32, few steps) make the one-pipeline sheet's cells, each once, and stop together."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sd35ui.core import devices, generate, sheet, workers  # noqa: E402
from sd35ui.core.pipeline import LoadOptions, model_spec  # noqa: E402
from sd35ui.core.settings import GenerationSettings  # noqa: E402

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=32, height=32, steps=3, guidance=4.5, seed=11)


@pytest.mark.parametrize(
    ("text", "cuda", "expected"),
    [
        ("all", 2, ["cuda:0", "cuda:1"]),
        ("all", 0, ["cpu"]),
        (" ALL ", 1, ["cuda:0"]),
        ("0,1", 2, ["cuda:0", "cuda:1"]),
        ("1", 2, ["cuda:1"]),
        ("cuda:0, cuda:1", 2, ["cuda:0", "cuda:1"]),
        ("cuda", 1, ["cuda:0"]),
        ("cpu,cpu", 0, ["cpu", "cpu"]),
        ("cpu", 2, ["cpu"]),
    ],
)
def test_parse_devices(text, cuda, expected):
    assert devices.parse_devices(text, cuda) == expected


@pytest.mark.parametrize(
    ("text", "cuda", "message"),
    [
        ("2", 2, "there is no GPU 2: PyTorch sees GPUs 0, 1"),
        ("0,1", 0, "PyTorch sees no CUDA GPU. Name one of those; use cpu (or cpu,cpu"),
        ("gpu0", 1, "cannot read 'gpu0'"),
        ("-1", 1, "cannot read '-1'"),
        ("", 1, "names no device"),
        ("0,,1", 2, "names no device"),
        ("0,cpu", 1, "mixes GPUs and CPU workers"),
        ("0,0", 1, "cuda:0 named twice"),
    ],
)
def test_parse_devices_says_how_to_fix_bad_input(text, cuda, message):
    with pytest.raises(ValueError, match="Devices: ") as caught:
        devices.parse_devices(text, cuda)
    assert message in str(caught.value)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


@pytest.fixture(scope="module")
def pipes():
    return devices.load_workers(LoadOptions(model="tiny-random"), ["cpu", "cpu"])


@contextmanager
def counted_calls(pipes, before=None):
    """Transformer calls per pipeline (a forward hook on each); `before(pipe)` runs ahead of every call."""
    calls = [0] * len(pipes)
    handles = []
    for k, pipe in enumerate(pipes):

        def hook(_module, _inputs, k=k, pipe=pipe):
            if before is not None:
                before(pipe)
            calls[k] += 1

        handles.append(pipe.transformer.register_forward_pre_hook(hook))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def spec_of(x="3, 6", y="2, 3, 4"):
    return sheet.make_spec(BASE, "Guidance", x, "Steps", y, model=TINY)


def by_index(result):
    return {done.cell.index: np.asarray(done.image) for done in result.cells}


def test_load_workers_loads_one_pipeline_per_device(pipes):
    assert len(pipes) == 2 and pipes[0] is not pipes[1]
    assert pipes[0].transformer is not pipes[1].transformer
    assert [p.sd35ui_options.device for p in pipes] == ["cpu", "cpu"]
    assert {p.sd35ui_options.dtype for p in pipes} == {"float32"}


def test_two_cpu_workers_make_the_one_worker_sheet(pipes):
    spec = spec_of()
    one = sheet.run_sheet(pipes[0], spec)
    made = []
    with counted_calls(pipes) as calls:
        two = workers.run_sheet_on(pipes, spec, on_cell=made.append)
    assert [done.cell.index for done in two.cells].count(0) == 1
    assert sorted(done.cell.index for done in two.cells) == list(range(spec.n_cells)) == list(range(6))
    assert made == two.cells and two.complete and not two.stopped and two.first_steps_shared > 0
    expected, got = by_index(one), by_index(two)
    assert all(np.array_equal(expected[i], got[i]) for i in expected)
    assert all(c > 0 for c in calls), f"both workers should make cells: transformer calls {calls}"
    assert sum(calls) == sum(generate.model_calls(c.settings) for c in sheet.plan_sheet(spec))
    assert np.array_equal(np.asarray(one.image()), np.asarray(two.image()))


def test_each_worker_thread_runs_one_torch_thread_and_the_count_is_restored(pipes):
    import torch

    seen = set()
    torch.set_num_threads(2)
    try:
        with counted_calls(pipes, before=lambda _pipe: seen.add(torch.get_num_threads())):
            workers.run_sheet_on(pipes, spec_of("3", "2, 3"))
        assert seen == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_stop_ends_every_worker_within_a_step(pipes):
    spec = spec_of("3, 6", "4, 5, 6")
    stop, after_stop = threading.Event(), []

    def on_progress(index, n, step, steps):
        stop.set()  # after the first step anywhere

    with counted_calls(pipes, before=lambda pipe: after_stop.append(pipe) if stop.is_set() else None):
        result = workers.run_sheet_on(pipes, spec, on_progress=on_progress, stop=stop)
    assert result.stopped and not result.cells
    assert len(after_stop) <= len(pipes) - 1  # the other worker may only finish the step it was in


def test_a_failing_worker_stops_the_other_and_its_error_is_raised(pipes):
    def fail(pipe):
        if pipe is pipes[1]:
            raise RuntimeError("worker 1 broke")

    with counted_calls(pipes, before=fail) as calls, pytest.raises(RuntimeError, match="worker 1 broke"):
        workers.run_sheet_on(pipes, spec_of("3, 6", "4, 5, 6"))
    assert calls[0] <= 6, "worker 0 should stop within a step of the failure, not finish the sheet alone"


def test_out_of_memory_in_a_worker_keeps_the_finished_cells(pipes):
    import torch

    def out_of_memory(pipe):
        if pipe is pipes[1]:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with counted_calls(pipes, before=out_of_memory), pytest.raises(sheet.SheetOutOfMemory) as caught:
        workers.run_sheet_on(pipes, spec_of())
    assert "Memory has been freed" in str(caught.value)
    assert isinstance(caught.value.result, sheet.SheetResult)


def test_run_sheet_on_keeps_the_sheet_guard(pipes):
    with pytest.raises(ValueError, match="the limit is 4"):
        workers.run_sheet_on(pipes, spec_of(), max_cells=4)
    with pytest.raises(ValueError, match="no pipelines"):
        workers.run_sheet_on([], spec_of())


def test_cli_devices_flag_makes_the_one_device_sheet(tmp_path, cli):
    args = "--prompt", "a red circle", "--x", "guidance=1,4.5", "--y", "steps=2,3", "--width", "32", "--height", "32"
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    # Like with like: the CPU workers of --devices cpu,cpu run one torch thread each (`workers.cpu_threads`), so the
    # one-device run gets one too. torch's default is a thread per core, and the thread count is not neutral: at
    # 128x128 one thread and two to sixteen already differ by 1/255 on a pixel on an AMD EPYC, so the same claim with
    # the default would hold or not with the machine's cores.
    proc_one = cli("sheet", *args, "--seed", "9", "--out", str(one), env={"OMP_NUM_THREADS": "1"})
    proc_two = cli(
        "sheet", *args, "--seed", "9", "--out", str(two), "--devices", "cpu,cpu", "--cells-dir", str(tmp_path)
    )
    assert proc_one.returncode == 0, proc_one.stderr
    assert proc_two.returncode == 0, proc_two.stderr
    assert len(list(tmp_path.glob("two-r*c*.png"))) == 4
    with Image.open(one) as a, Image.open(two) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_cli_bad_devices_is_a_clear_error(tmp_path, cli):
    proc = cli("sheet", "--prompt", "x", "--out", str(tmp_path / "s.png"), "--devices", "9")
    assert proc.returncode == 2 and "no GPU 9" in proc.stderr and "Traceback" not in proc.stderr


def test_devices_bench_runs_and_its_workers_make_the_same_cells(tmp_path):
    """bench/devices_bench.py end to end at the smallest size (its figures are never asserted: speed is measured,
    not tested)."""
    import json

    from bench import devices_bench

    report = devices_bench.main(["--rounds", "1", "--size", "32", "--steps", "2", "--json", str(tmp_path / "b.json")])
    assert report["max_pixel_difference_from_one_t1"]["workers"] == 0
    assert all(calls > 0 for calls in report["transformer_calls_per_worker"][0])
    assert "speedup_workers_vs_one_t1" in json.loads((tmp_path / "b.json").read_text())["figures"]


def test_resume_on_two_workers_makes_only_the_missing_cells(pipes, tmp_path):
    """The app's Compare tab resumes a sheet on --devices too: saved cells are read back, the others are made."""
    from sd35ui.core import explore

    spec = spec_of()
    (tmp_path / "day").mkdir()
    first = sheet.run_sheet(pipes[0], spec)
    for done in first.cells[:4]:
        sheet.save_cell(done, tmp_path / "day" / "first.png")
    with counted_calls(pipes) as calls:
        second = workers.run_sheet_on(pipes, spec, reuse=explore.reusable_cells(tmp_path))
    assert second.complete and second.reused == 4
    left = [done for done in second.cells if not done.reused]
    assert sum(calls) == sum(generate.model_calls(done.settings) for done in left) > 0
    assert np.array_equal(np.asarray(first.image()), np.asarray(second.image()))
