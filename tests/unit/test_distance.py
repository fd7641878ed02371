"""Image distance (percent mean absolute difference), the difference heat map and neighbour distances, on images
whose answers can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sd35ui.core import distance

BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def square(colour, size=(8, 4), mode="RGB"):
    return Image.new(mode, size, colour)


def half_changed(base=(100, 100, 100), change=(51, 0, 0), size=(8, 4)):
    """`base` everywhere, with `change` added to the right half."""
    image = square(base, size)
    w, h = size
    changed = tuple(b + c for b, c in zip(base, change))
    ImageDraw.Draw(image).rectangle((w // 2, 0, w - 1, h - 1), fill=changed)
    return image


def test_identical_images_are_zero_apart():
    image = half_changed()
    assert distance.image_distance(image, image.copy()) == 0.0


def test_black_and_white_are_a_hundred_apart_either_way_round():
    assert distance.image_distance(square(BLACK), square(WHITE)) == 100.0
    assert distance.image_distance(square(WHITE), square(BLACK)) == 100.0


def test_a_half_changed_image_gives_the_worked_out_value():
    # half the pixels change by 51 in one channel of three: 51 / 3 / 2 = 8.5 of 255, i.e. 10/3 percent
    assert distance.image_distance(square((100, 100, 100)), half_changed()) == pytest.approx(100 * 8.5 / 255)
    # half the pixels go from black to white in every channel: 50 percent
    assert distance.image_distance(square(BLACK), half_changed(BLACK, (255, 255, 255))) == 50.0


def test_non_rgb_images_are_compared_as_rgb():
    rgba = square((10, 20, 30, 0), mode="RGBA")  # alpha is ignored
    assert distance.image_distance(rgba, square((10, 20, 30))) == 0.0
    assert distance.image_distance(square(255, mode="L"), square(BLACK)) == 100.0


def test_different_sizes_say_both_sizes_and_what_to_do():
    with pytest.raises(ValueError, match=r"different sizes: 8x4 and 4x8\. .*resize"):
        distance.image_distance(square(BLACK), square(BLACK, (4, 8)))
    with pytest.raises(ValueError, match="different sizes"):
        distance.difference_map(square(BLACK), square(BLACK, (4, 8)))


def test_empty_images_are_refused():
    with pytest.raises(ValueError, match="empty images"):
        distance.image_distance(square(BLACK, (0, 0)), square(BLACK, (0, 0)))


@pytest.mark.parametrize(
    ("t", "colour"),
    [(0.0, BLACK), (1 / 3, (255, 0, 0)), (2 / 3, (255, 255, 0)), (1.0, WHITE), (1 / 6, (128, 0, 0))],
)
def test_the_colour_map_runs_black_red_yellow_white(t, colour):
    assert tuple(distance.heat_colours(np.array(t))) == colour


def test_the_heat_map_is_white_where_the_difference_is_largest_and_black_where_equal():
    a = square((100, 100, 100))
    b = half_changed()  # right half +51 in red
    ImageDraw.Draw(b).point((0, 0), fill=(100, 100, 125))  # one left pixel a little different (+25 in blue)
    heat = distance.difference_map(a, b)
    assert heat.mode == "RGB" and heat.size == a.size
    assert heat.getpixel((7, 3)) == WHITE  # the right half: the pair's largest difference
    assert heat.getpixel((1, 1)) == BLACK  # unchanged
    assert heat.getpixel((0, 0)) == (255, 120, 0)  # 25/51 of the scale, past red: green 255 * (3 * 25/51 - 1)
    assert heat.info[distance.DIFFERENCE_KEY] == pytest.approx(100 * 17 / 255)  # 51 / 3 channels is drawn white


def test_the_heat_map_of_identical_images_is_black_with_scale_zero():
    heat = distance.difference_map(half_changed(), half_changed())
    assert heat.getextrema() == ((0, 0), (0, 0), (0, 0))
    assert heat.info[distance.DIFFERENCE_KEY] == 0.0


def test_neighbour_distances_follow_the_axis():
    images = [square(BLACK), square(BLACK), square(WHITE), half_changed(BLACK, (255, 255, 255))]
    assert distance.neighbour_distances(images) == [0.0, 100.0, 50.0]
    assert distance.neighbour_distances(images[:1]) == []
    assert distance.neighbour_distances([]) == []


def test_neighbour_distances_name_the_pair_with_a_size_mismatch():
    with pytest.raises(ValueError, match=r"Images 1 and 2: .*different sizes"):
        distance.neighbour_distances([square(BLACK), square(BLACK), square(BLACK, (2, 2))])
