"""Tokenizer, images and batches for the unified model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from frontier.errors import ConfigError, ShapeError
from frontier.multimodal.modeling_unified import IGNORE_INDEX
from frontier.multimodal.processing import (
    build_tokenizer,
    encode_words,
    generation_batch,
    load_image,
    pixel_values,
    text_batch,
)
from frontier.multimodal.scenes import Example

WORDS = ["a", "red", "sneaker", "in", "the", "top", "left", "caption", ":", "question", "what", "is", "?", "answer"]


def test_tokenizer_round_trips_and_saves(tmp_path):
    tokenizer = build_tokenizer(WORDS)
    ids = encode_words(tokenizer, "What is in the top left?")
    assert tokenizer.decode(ids) == "what is in the top left ?"
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("red sneaker", add_special_tokens=False)["input_ids"] == encode_words(tokenizer, "red sneaker")


def test_unknown_words_are_named():
    with pytest.raises(ConfigError, match="words the model does not know: purple, zebra"):
        encode_words(build_tokenizer(WORDS), "a purple zebra")


def test_generation_batch_learns_only_the_target_and_eos():
    tokenizer = build_tokenizer(WORDS)
    question = "question : what is in the top left ? answer :"
    caption, vqa = Example("caption", "caption :", "a red sneaker"), Example("vqa", question, "sneaker")
    batch = generation_batch(tokenizer, [[caption], [vqa]])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert tokenizer.decode(ids[0][mask[0].bool()]) == "[BOS] caption : a red sneaker [EOS]"
    assert tokenizer.decode(labels[0][labels[0] != IGNORE_INDEX]) == "a red sneaker [EOS]"
    assert tokenizer.decode(labels[1][labels[1] != IGNORE_INDEX]) == "sneaker [EOS]"
    assert (labels[0][mask[0] == 0] == IGNORE_INDEX).all()
    assert text_batch(tokenizer, ["red sneaker", "a red sneaker"])["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]


def test_texts_of_one_image_pack_into_segments():
    tokenizer = build_tokenizer(WORDS)
    question = "question : what is in the top left ? answer :"
    packed = generation_batch(tokenizer, [[Example("caption", "caption :", "a red sneaker"),
                                           Example("vqa", question, "sneaker")]])  # fmt: skip
    ids, labels, segments = packed["input_ids"][0], packed["labels"][0], packed["segment_ids"][0]
    assert segments.tolist() == [0] * 7 + [1] * 14  # [BOS] caption : a red sneaker [EOS] | [BOS] question … [EOS]
    assert tokenizer.decode(ids[segments == 1]).startswith("[BOS] question")
    assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == "a red sneaker [EOS] sneaker [EOS]"


def test_pixel_values_scale_and_check_shape():
    image = np.full((8, 8, 3), 255, dtype=np.uint8)
    assert torch.equal(pixel_values([image], 8), torch.ones(1, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"image 0 is uint8 \(8, 8, 3\); expected uint8 \(16, 16, 3\)"):
        pixel_values([image], 16)


def test_load_image_refuses_bad_files(tmp_path):
    good = tmp_path / "scene.png"
    Image.fromarray(np.zeros((16, 16, 4), dtype=np.uint8), "RGBA").save(good)
    assert load_image(good, 16).shape == (16, 16, 3)
    with pytest.raises(ConfigError, match="is 16×16; the model reads 32×32"):
        load_image(good, 32)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ConfigError, match="not a readable image"):
        load_image(corrupt, 16)
    with pytest.raises(ConfigError, match="no image file"):
        load_image(tmp_path / "missing.png", 16)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16)).save(cmyk)
    with pytest.raises(ConfigError, match="mode CMYK is not supported"):
        load_image(cmyk, 16)


def test_load_image_refuses_a_decompression_bomb_before_decoding(tmp_path, monkeypatch):
    image = tmp_path / "big.png"
    Image.new("RGB", (16, 16)).save(image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 256 pixels is then over PIL's bomb limit (2 × 100)
    with pytest.raises(ConfigError, match="not a readable image"):
        load_image(image, 16)


def test_empty_text_is_a_clear_error():
    with pytest.raises(ConfigError, match="text 1 is empty"):
        text_batch(build_tokenizer(WORDS), ["a red sneaker", "  "])
