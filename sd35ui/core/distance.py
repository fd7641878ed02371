"""How different two images are: one plain number, and a heat map of where. numpy and PIL only.

The number is the *percent mean absolute difference*: the mean, over every pixel and each of R, G and B, of
|a - b| (values 0-255), divided by 255 and times 100. 0 means identical, 100 means all black against all white;
changing every pixel of one channel by 51 gives 100 * 51 / 3 / 255 = 6.67. It says how much changed, not whether
a person would notice (no perceptual weighting), which keeps it easy to check by hand and the same everywhere: the
sheet explorer computes the same number in the browser when it may read the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

FULL_SCALE = 255.0  # the largest difference one 8-bit channel can have
DIFFERENCE_KEY = "max_difference"  # difference_map's image.info entry: the difference drawn in white, in percent


def _pixels(a: Image.Image, b: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Both images as int16 RGB arrays (height, width, 3), refusing a size mismatch or an empty image."""
    if a.size != b.size:
        raise ValueError(
            f"Cannot compare images of different sizes: {a.width}x{a.height} and {b.width}x{b.height}. "
            "Compare cells of the same sheet, or resize one image to the other's size first."
        )
    if a.width * a.height == 0:
        raise ValueError(f"Cannot compare empty images ({a.width}x{a.height}): there are no pixels to compare.")
    return (np.asarray(a.convert("RGB"), dtype=np.int16), np.asarray(b.convert("RGB"), dtype=np.int16))


def _pixel_difference(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Per-pixel mean over R, G, B of |a - b|, as floats 0-255, shape (height, width)."""
    pa, pb = _pixels(a, b)
    return np.abs(pa - pb).mean(axis=2)


def image_distance(a: Image.Image, b: Image.Image) -> float:
    """The percent mean absolute difference of two same-size images (0 = identical, 100 = black vs white).

    Images that are not RGB (RGBA, greyscale, palette) are converted to RGB first, so alpha is ignored.
    Raises ValueError when the sizes differ.
    """
    return float(_pixel_difference(a, b).mean() / FULL_SCALE * 100.0)


def heat_colours(t: np.ndarray) -> np.ndarray:
    """The heat map's colour map: 0 black, 1/3 red, 2/3 yellow, 1 white, linear in between (red rises first,
    then green, then blue). `t` holds values 0-1; returns uint8 RGB with one more axis of length 3."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    channels = [np.clip(3.0 * t - k, 0.0, 1.0) for k in (0, 1, 2)]
    return np.round(np.stack(channels, axis=-1) * 255.0).astype(np.uint8)


def difference_map(a: Image.Image, b: Image.Image) -> Image.Image:
    """A heat map (RGB, the images' size) of where two same-size images differ.

    Each pixel's difference is the mean over R, G, B of |a - b|. The scale is relative to this pair: the largest
    difference in it is drawn white, no difference black, and in between through red and yellow (`heat_colours`).
    So the map shows *where* the pair differs; how much, in absolute terms, is in `image.info["max_difference"]`:
    the difference drawn white, in percent of full scale (the unit of `image_distance`; 0.0 for identical images,
    whose map is all black). Raises ValueError when the sizes differ.
    """
    difference = _pixel_difference(a, b)
    largest = float(difference.max())
    scaled = difference / largest if largest > 0 else np.zeros_like(difference)
    image = Image.fromarray(heat_colours(scaled))
    image.info[DIFFERENCE_KEY] = largest / FULL_SCALE * 100.0
    return image


def neighbour_distances(images: Sequence[Image.Image]) -> list[float]:
    """`image_distance` between each image and the next along an axis: n images give n - 1 numbers (none for
    fewer than two). Raises ValueError naming the first pair whose sizes differ."""
    distances: list[float] = []
    for index in range(len(images) - 1):
        try:
            distances.append(image_distance(images[index], images[index + 1]))
        except ValueError as error:
            raise ValueError(f"Images {index} and {index + 1}: {error}") from error
    return distances
