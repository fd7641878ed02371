"""`python -m sd35ui.models.train --resume`: a run cut short and resumed ends with the weights of one that ran straight
through, and the resumed run goes on from its checkpoint instead of starting again."""

from __future__ import annotations

import re

import torch

from sd35ui.models import train

# a few steps of every phase on tiny batches: seconds, not the real recipe's half hour
SHORT = ["--vae-steps", "2", "--vae-batch", "2", "--clip-steps", "2", "--clip-batch", "4", "--batch", "2"]


def run(tmp_path, name: str, steps: int, *extra: str) -> dict:
    folder = tmp_path / name
    argv = [*SHORT, "--warmup", "1", "--steps", str(steps), "--threads", str(torch.get_num_threads())]
    argv += ["--out", str(folder / "model"), "--checkpoints", str(folder / "checkpoints"), *extra]
    assert train.main(argv) == 0
    return torch.load(folder / "checkpoints" / "transformer.pt", weights_only=True)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, capsys):
    straight = run(tmp_path, "straight", 4)
    run(tmp_path, "cut", 2)
    capsys.readouterr()
    resumed = run(tmp_path, "cut", 4, "--resume")

    first = re.search(r"transformer:[^\r\n]*", capsys.readouterr().out).group()  # the bar as it first shows
    assert re.search(r"\b2/4\b", first), f"the resumed run should start at step 2 of 4: {first!r}"
    assert resumed["step"] == straight["step"] == 4
    for part in ("model", "ema", "opt"):
        assert_same(resumed[part], straight[part])


def assert_same(a, b, path: str = "") -> None:
    """Exact equality of two nested state dicts (tensors compared bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}/{i}")
    else:
        assert a == b, path
