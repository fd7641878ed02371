"""Interleaved rounds, medians and spreads: how every timed figure in bench/ is measured and reported.

On a shared machine the load from other jobs moves timings by up to 2x within minutes, so a figure is worth quoting
only if a second run reproduces it. The rules, applied by bench.py and sheet_bench.py:

- Variants that are compared run in interleaved rounds (A, B, A, B, ...), the order rotated each round (A B C,
  B C A, C A B) so that none always runs first or last: load from other jobs hits every variant alike.
- One torch thread on a CPU unless `--threads` says otherwise: on a busy CPU torch's threads spin-wait on each other,
  which adds more noise than speed.
- A figure is the median of its rounds, with its spread = (max - min) / median: the whole range of the rounds as a
  share of the median (with 3 to 5 rounds an interquartile range would be nearly the same). A ratio of two variants
  (A vs B) is the median of the per-round ratios A_i / B_i, each of one round, with their spread; not a ratio of
  medians, which would pair a fast round of one with a slow round of the other.
- A figure whose spread is over `SPREAD_LIMIT` (10%), or that has fewer than two rounds (no spread known), is
  marked unstable: quote it with its spread, or not at all.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

SPREAD_LIMIT = 0.10  # a figure whose rounds range over more than 10% of its median is marked "unstable"

T = TypeVar("T")


@dataclass(frozen=True)
class Figure:
    """One timed figure: the values of its rounds, their median and spread."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("A figure needs at least one measured value.")

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float | None:
        """(max - min) / median, or None with fewer than two values (nothing to compare)."""
        if len(self.values) < 2 or self.median == 0:
            return None
        return (max(self.values) - min(self.values)) / abs(self.median)

    @property
    def unstable(self) -> bool:
        return self.spread is None or self.spread > SPREAD_LIMIT

    def to_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "spread": self.spread,
            "min": min(self.values),
            "max": max(self.values),
            "n": len(self.values),
            "unstable": self.unstable,
            "values": list(self.values),
        }

    def text(self, fmt: str = ".3g", unit: str = "") -> str:
        return figure_text(self.to_dict(), fmt, unit)


def figure(values: Iterable[float]) -> Figure:
    return Figure(tuple(float(v) for v in values))


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Figure:
    """The per-round ratios numerators[i] / denominators[i] (both measured in round i) as one figure."""
    if len(numerators) != len(denominators):
        raise ValueError(f"Ratios pair rounds: got {len(numerators)} and {len(denominators)} values.")
    return figure(a / b for a, b in zip(numerators, denominators))


def figure_text(fig: dict[str, Any] | None, fmt: str = ".3g", unit: str = "") -> str:
    """'0.79 s ±4%', '1.07x ±14% unstable', or '0.79 s (1 run)': a figure as it goes in a table."""
    if not fig:
        return "-"
    text = f"{fig['median']:{fmt}}{unit}"
    if fig.get("spread") is None:
        return f"{text} (1 run)"
    text += f" ±{100 * fig['spread']:.0f}%"
    return f"{text} unstable" if fig["spread"] > SPREAD_LIMIT else text


def interleave(variants: dict[str, Callable[[int], T]], rounds: int) -> dict[str, list[T]]:
    """Call every variant once per round, `variants[name](round)`, in an order rotated each round; their results
    by variant, in round order."""
    if rounds < 1:
        raise ValueError(f"Need at least one round, got {rounds}.")
    names = list(variants)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            results[name].append(variants[name](r))
    return results


def unstable_names(figures: dict[str, dict[str, Any]]) -> list[str]:
    """The names of the figures (as `Figure.to_dict()`) marked unstable."""
    return [name for name, fig in figures.items() if fig.get("unstable")]


def set_threads(threads: int | None, cuda: bool = False) -> int:
    """torch's CPU threads: `threads` when given, else 1 on a CPU run (torch's own choice on CUDA, where the CPU
    only launches work). Returns the number in effect."""
    import torch

    if threads or not cuda:
        torch.set_num_threads(threads or 1)
    return torch.get_num_threads()
