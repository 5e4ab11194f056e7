"""Small stand-in object catalogs (the real ones are fetched from package registries; see test_sources.py)."""

from __future__ import annotations

import numpy as np
import pytest

from frontier.multimodal.sources import ObjectImage

GREY = ("sneaker", "bag", "coat")  # tintable, like Fashion-MNIST items
COLOURED = (("apple", "food & drink", "emoji", (200, 30, 30)), ("flag of france", "flag", "flag", (30, 30, 200)))


def make_object(name: str, category: str, source: str, rgb: tuple[int, int, int], seed: int, side: int = 28):
    rng = np.random.default_rng(seed)
    rgba = np.zeros((side, side, 4), dtype=np.uint8)
    rgba[..., :3] = rgb
    rgba[4:-4, 4:-4, 3] = rng.integers(128, 256, (side - 8, side - 8))
    return ObjectImage(name, category, source, rgba)


def make_catalog(instances: int, seed: int) -> list[ObjectImage]:
    objects = [make_object(n, "clothing", "fashion-mnist", (255, 255, 255), seed + 10 * i + j)
               for i, n in enumerate(GREY) for j in range(instances)]  # fmt: skip
    objects += [make_object(n, c, s, rgb, seed + 100 + i) for i, (n, c, s, rgb) in enumerate(COLOURED)]
    return objects


@pytest.fixture
def tiny_catalogs() -> dict[str, list[ObjectImage]]:
    """Three grey (tintable) objects with two training images and one test image each, plus two coloured ones."""
    return {"train": make_catalog(2, seed=0), "test": make_catalog(1, seed=1000)}
