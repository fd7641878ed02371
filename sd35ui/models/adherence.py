"""Prompt adherence of a coloured-shapes image: is the background, the shape's colour and its form what was asked?

Pure numpy, no torch, so it can judge any image, generated or drawn. Each pixel is classified as the nearest palette
colour; the background is the majority colour of the border; the shape's colour is the majority colour of the
non-background pixels of the centre region; the form is the template (circle, square, triangle) fitted to the
non-background mask's bounding box with the best overlap (IoU).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sd35ui.models.shapes import COLOURS, PALETTE, SHAPES

BORDER = 3  # pixels: the shape never reaches this close to the edge (centre 32 +- 3 jitter, half-size <= 20)
CENTRE = 12  # half-width of the centre box that holds the shape's interior (a triangle is 14+ px wide mid-height)
MIN_MASK_FRACTION = 0.02  # fewer non-background pixels than this (82 of 4096) means there is no shape
PURE_DISTANCE = 40.0  # RGB distance to a palette colour under which a pixel counts as "clean" (jitter is <= 21)
BOX_MIN_SHARE = 0.1  # rows/columns with fewer mask pixels than this share of the fullest one are not in the box

# The fixed measurement set: 30 of the 90 captions, each colour 5 times as shape and 5 times as background, each
# shape 10 times.
EVAL_LABELS: tuple[tuple[str, str, str], ...] = tuple(
    (COLOURS[k % 6], SHAPES[(k % 6 + k // 6) % 3], COLOURS[(k % 6 + 1 + k // 6) % 6]) for k in range(30)
)

_PALETTE_RGB = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)


@dataclass(frozen=True)
class Reading:
    """What the metric sees in one image."""

    background: str
    colour: str | None  # None when there is no shape
    shape: str | None
    shape_fraction: float  # share of the image that is not background


@dataclass(frozen=True)
class Score:
    """Adherence of one image to its caption: 1.0 right, 0.0 wrong."""

    background: float
    colour: float
    shape: float

    @property
    def all(self) -> float:
        return float(self.background and self.colour and self.shape)


def nearest_colour(image: np.ndarray) -> np.ndarray:
    """Per-pixel index into `COLOURS` of the nearest palette colour (Euclidean in RGB)."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    distances = ((pixels[:, None, :] - _PALETTE_RGB[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1).reshape(image.shape[:2])


def _majority(labels: np.ndarray) -> int:
    return int(np.bincount(labels.ravel(), minlength=len(COLOURS)).argmax())


def templates(height: int, width: int, box: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
    """Boolean masks of each shape filling the box (top, left, bottom, right; pixel edges, inclusive-exclusive)."""
    top, left, bottom, right = box
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # pixel centres
    cy, cx = (top + bottom) / 2, (left + right) / 2
    ry, rx = max((bottom - top) / 2, 0.5), max((right - left) / 2, 0.5)
    inside_box = (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)
    circle = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1.0
    # Apex up at the top centre, base along the bottom: the half-width grows linearly from 0 to rx.
    triangle = inside_box & (np.abs(xs - cx) <= rx * (ys - top) / (bottom - top + 1e-6))
    return {"circle": circle, "square": inside_box, "triangle": triangle}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _extent(counts: np.ndarray) -> tuple[float, float]:
    """First and one-past-last index whose count reaches `BOX_MIN_SHARE` of the largest (stray pixels and thin
    anti-aliased fringes do not stretch the box)."""
    keep = np.nonzero(counts >= max(1.0, BOX_MIN_SHARE * counts.max()))[0]
    return float(keep[0]), float(keep[-1] + 1)


def read(image: np.ndarray) -> Reading:
    """Read background, shape colour and shape form from an HxWx3 uint8 image."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an HxWx3 RGB image, got an array of shape {image.shape}.")
    labels = nearest_colour(image)
    height, width = labels.shape
    border = np.ones_like(labels, dtype=bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    background = _majority(labels[border])
    mask = labels != background
    fraction = float(mask.mean())
    if fraction < MIN_MASK_FRACTION:
        return Reading(COLOURS[background], None, None, fraction)
    cy, cx = height // 2, width // 2
    centre = labels[cy - CENTRE : cy + CENTRE, cx - CENTRE : cx + CENTRE]
    centre_fg = centre[centre != background]
    colour = _majority(centre_fg) if centre_fg.size else _majority(labels[mask])
    top, bottom = _extent(mask.sum(axis=1))
    left, right = _extent(mask.sum(axis=0))
    fits = templates(height, width, (top, left, bottom, right))
    shape = max(SHAPES, key=lambda s: _iou(mask, fits[s]))
    return Reading(COLOURS[background], COLOURS[colour], shape, fraction)


def score(image: np.ndarray, label: tuple[str, str, str]) -> Score:
    """How well `image` matches `label` = (colour, shape, background)."""
    colour, shape, background = label
    seen = read(image)
    return Score(
        background=float(seen.background == background),
        colour=float(seen.colour == colour),
        shape=float(seen.shape == shape),
    )


def colour_fraction(image: np.ndarray, colour: str) -> float:
    """Share of pixels whose nearest palette colour is `colour`: a smooth measure of how much of the asked colour
    an image holds, for effects too small to flip the right/wrong reading."""
    return float((nearest_colour(image) == COLOURS.index(colour)).mean())


def purity(image: np.ndarray) -> float:
    """Share of pixels within `PURE_DISTANCE` of a palette colour. The dataset is flat colours with thin
    anti-aliased edges (purity ~0.95); an under-denoised image is a blurry mix of colours and scores far lower."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    distances = ((pixels[:, None, :] - _PALETTE_RGB[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    return float((distances < PURE_DISTANCE**2).mean())


def mean_scores(scores: Iterable[Score]) -> dict[str, float]:
    """Average adherence per aspect (and all three right at once) over many images."""
    scores = list(scores)
    if not scores:
        raise ValueError("No scores to average.")
    return {
        "background": float(np.mean([s.background for s in scores])),
        "colour": float(np.mean([s.colour for s in scores])),
        "shape": float(np.mean([s.shape for s in scores])),
        "all": float(np.mean([s.all for s in scores])),
    }
