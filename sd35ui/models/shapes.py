"""The coloured-shapes dataset the built-in tiny model is trained on: captions, palette and seeded drawing.

"a red circle on a blue background": 6 colours x 3 shapes x 5 backgrounds (any colour but the shape's) = 90
prompts. Images are 64x64, drawn with PIL at 4x and downsampled (anti-aliased edges), the shape centred with a
small jitter and a moderate size: in a measured CPU run, shapes placed anywhere were still blobs after the
training budget, centred ones were learned. Everything is pure numpy + PIL; no torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64  # pixels; the VAE turns it into 16 x 16 latents
SUPERSAMPLE = 4  # drawn at 256 px and downsampled, so edges are anti-aliased like real images
HALF_SIZE = (14, 20)  # shape half-size range in pixels (inclusive): big enough to learn, small enough to fit
JITTER = 3  # the shape centre moves by up to this many pixels each way
COLOUR_JITTER = 12  # each RGB channel varies by up to this many levels, so colours are ranges, not points

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 215, 30),
    "white": (242, 242, 242),
    "black": (16, 16, 16),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
TEMPLATE = "a {colour} {shape} on a {background} background"
# Every word a caption can use: each must be a single token of both tiny tokenizers (tests/unit/test_shapes.py).
VOCABULARY = ("a", "on", "background") + COLOURS + SHAPES


def caption(colour: str, shape: str, background: str) -> str:
    if colour == background:
        raise ValueError(f"The shape and the background are both {colour}: pick two different colours.")
    if colour not in PALETTE or background not in PALETTE or shape not in SHAPES:
        raise ValueError(
            f"Unknown colour or shape in ({colour!r}, {shape!r}, {background!r}): colours are {', '.join(COLOURS)}; "
            f"shapes are {', '.join(SHAPES)}."
        )
    return TEMPLATE.format(colour=colour, shape=shape, background=background)


LABELS: tuple[tuple[str, str, str], ...] = tuple(
    (colour, shape, background)
    for colour in COLOURS
    for shape in SHAPES
    for background in COLOURS
    if background != colour
)
PROMPTS: tuple[str, ...] = tuple(caption(*label) for label in LABELS)


def parse_caption(text: str) -> tuple[str, str, str]:
    """A caption back to (colour, shape, background); ValueError if it does not follow the template."""
    words = text.strip().lower().split()
    if len(words) != 7 or words[0] != "a" or words[3:5] != ["on", "a"] or words[6] != "background":
        raise ValueError(f"{text!r} does not read like {TEMPLATE!r}.")
    colour, shape, background = words[1], words[2], words[5]
    caption(colour, shape, background)  # validates the words
    return colour, shape, background


def shape_polygon(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]] | None:
    """The outline of a square or triangle (apex up, base as wide as it is tall); None for a circle."""
    if shape == "square":
        return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "triangle":
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    return None


def _jittered(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    offsets = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(rgb) + offsets, 0, 255))  # type: ignore[return-value]


def draw(colour: str, shape: str, background: str, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of the caption, its randomness (size, position, exact colours) drawn from `rng`."""
    caption(colour, shape, background)
    half = int(rng.integers(HALF_SIZE[0], HALF_SIZE[1] + 1))
    cx, cy = (IMAGE_SIZE / 2 + rng.uniform(-JITTER, JITTER) for _ in range(2))
    fill, bg = _jittered(PALETTE[colour], rng), _jittered(PALETTE[background], rng)
    big = IMAGE_SIZE * SUPERSAMPLE
    image = Image.new("RGB", (big, big), bg)
    pen = ImageDraw.Draw(image)
    s = SUPERSAMPLE
    polygon = shape_polygon(shape, cx * s, cy * s, half * s)
    if polygon is None:
        pen.ellipse([(cx - half) * s, (cy - half) * s, (cx + half) * s, (cy + half) * s], fill=fill)
    else:
        pen.polygon(polygon, fill=fill)
    return np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))


def sample(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` random examples: images (N x 64 x 64 x 3 uint8) and their indices into `PROMPTS` / `LABELS`."""
    indices = rng.integers(0, len(LABELS), size=count)
    images = np.stack([draw(*LABELS[i], rng) for i in indices])
    return images, indices


def batch(seed: int, step: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The training batch of `step`: a pure function of (seed, step), so a resumed run sees the same data."""
    return sample(np.random.default_rng([seed, step]), count)
