"""The coloured-shapes dataset, its tokenization and the adherence metric: pure functions, no model."""

from __future__ import annotations

import numpy as np
import pytest

from sd35ui.models import adherence, shapes


def test_dataset_is_a_pure_function_of_seed_and_step():
    a_images, a_idx = shapes.batch(7, 3, 8)
    b_images, b_idx = shapes.batch(7, 3, 8)
    c_images, _ = shapes.batch(7, 4, 8)
    assert a_images.shape == (8, 64, 64, 3) and a_images.dtype == np.uint8
    assert np.array_equal(a_images, b_images) and np.array_equal(a_idx, b_idx)
    assert not np.array_equal(a_images, c_images)


def test_prompts_cover_every_colour_shape_and_background_pair():
    assert len(shapes.PROMPTS) == len(set(shapes.PROMPTS)) == 6 * 3 * 5
    for prompt, label in zip(shapes.PROMPTS, shapes.LABELS):
        assert shapes.parse_caption(prompt) == label
        assert label[0] != label[2]


@pytest.mark.parametrize(
    "text",
    ["a red circle on a red background", "a purple circle on a red background", "a red star on a blue background", ""],
)
def test_parse_caption_rejects_what_the_model_was_not_trained_on(text):
    with pytest.raises(ValueError):
        shapes.parse_caption(text)


def test_every_caption_word_is_one_token_of_both_tokenizers(tmp_path):
    from sd35ui.models.tiny import build_clip_tokenizer, build_t5_tokenizer

    clip = build_clip_tokenizer(tmp_path, shapes.VOCABULARY, max_length=16)
    t5 = build_t5_tokenizer(shapes.VOCABULARY)
    for word in shapes.VOCABULARY:
        assert len(clip(word, add_special_tokens=False).input_ids) == 1, word
        assert len(t5(word, add_special_tokens=False).input_ids) == 1, word
    for prompt in shapes.PROMPTS:
        assert len(clip(prompt, add_special_tokens=False).input_ids) == 7
        assert len(t5(prompt, add_special_tokens=False).input_ids) == 7
        assert len(clip(prompt).input_ids) <= clip.model_max_length


def test_shipped_model_tokenizes_captions_word_by_word():
    from sd35ui.models.tiny import shipped_model_path

    folder = shipped_model_path("tiny")
    if folder is None:
        pytest.skip("the trained model is not in sd35ui/models/tiny-shapes")
    from transformers import AutoTokenizer

    for sub in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        tokenizer = AutoTokenizer.from_pretrained(str(folder / sub))
        for prompt in shapes.PROMPTS[:10]:
            assert len(tokenizer(prompt, add_special_tokens=False).input_ids) == 7, (sub, prompt)


def test_metric_reads_every_ground_truth_image_right():
    images, indices = shapes.batch(123, 0, 600)
    scores = [adherence.score(image, shapes.LABELS[i]) for image, i in zip(images, indices)]
    assert adherence.mean_scores(scores) == {"background": 1.0, "colour": 1.0, "shape": 1.0, "all": 1.0}


def _other(values: tuple[str, ...], value: str, avoid: str = "") -> str:
    return next(v for v in values if v not in (value, avoid))


def test_metric_rejects_swapped_labels():
    images, indices = shapes.batch(5, 0, 120)
    for image, i in zip(images, indices):
        colour, shape, background = shapes.LABELS[i]
        assert adherence.score(image, (colour, _other(shapes.SHAPES, shape), background)).shape == 0.0
        assert adherence.score(image, (_other(shapes.COLOURS, colour, background), shape, background)).colour == 0.0
        assert adherence.score(image, (colour, shape, _other(shapes.COLOURS, background, colour))).background == 0.0
        swapped = adherence.score(image, (background, shape, colour))
        assert swapped.colour == swapped.background == swapped.all == 0.0


def test_metric_sees_no_shape_on_a_plain_image_and_counts_colour_fractions():
    plain = np.full((64, 64, 3), shapes.PALETTE["blue"], dtype=np.uint8)
    reading = adherence.read(plain)
    assert reading.background == "blue" and reading.colour is None and reading.shape is None
    assert adherence.score(plain, ("red", "circle", "blue")) == adherence.Score(1.0, 0.0, 0.0)
    assert adherence.colour_fraction(plain, "blue") == 1.0 and adherence.colour_fraction(plain, "red") == 0.0


def test_eval_set_is_balanced():
    labels = adherence.EVAL_LABELS
    assert len(set(labels)) == 30 and set(labels) <= set(shapes.LABELS)
    for position, values, count in ((0, shapes.COLOURS, 5), (1, shapes.SHAPES, 10), (2, shapes.COLOURS, 5)):
        assert all(sum(label[position] == v for label in labels) == count for v in values)


def test_metric_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="HxWx3"):
        adherence.read(np.zeros((64, 64), dtype=np.uint8))
