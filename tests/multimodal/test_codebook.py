"""The patch codebook: exact on images made of its own centroids, k-means lowers the error, files round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frontier.errors import ConfigError, ShapeError
from frontier.multimodal.codebook import PatchCodebook, fit_codebook


def tiled(codes: np.ndarray, colours: np.ndarray, patch: int) -> np.ndarray:
    """Images whose P×P patches are flat colours[codes]."""
    return np.kron(colours[codes].transpose(0, 3, 1, 2), np.ones((patch, patch), dtype=np.uint8)).transpose(0, 2, 3, 1)


def test_images_of_centroids_encode_and_decode_exactly(tmp_path):
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    codes = np.random.default_rng(0).integers(0, 4, (5, 4, 4))
    images = tiled(codes, colours, 4)
    codebook = PatchCodebook(torch.from_numpy(np.repeat(colours, 16, axis=0).reshape(4, 16, 3).reshape(4, -1)), 4)
    assert torch.equal(codebook.encode(images), torch.from_numpy(codes.reshape(5, 16)))
    assert np.array_equal(codebook.decode(codebook.encode(images), 16), images)
    codebook.save(tmp_path)
    loaded = PatchCodebook.load(tmp_path)
    assert loaded.patch_size == 4 and torch.equal(loaded.centroids, codebook.centroids)


def test_kmeans_recovers_the_colours_and_reconstructs():
    colours = np.array([[10, 10, 10], [200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], dtype=np.uint8)
    images = tiled(np.random.default_rng(1).integers(0, 5, (20, 4, 4)), colours, 4)
    codebook = fit_codebook(images, patch_size=4, size=5, seed=0)
    error = np.abs(codebook.decode(codebook.encode(images), 16).astype(int) - images).max()
    assert error <= 1


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot make 64 codes"):
        fit_codebook(np.zeros((1, 8, 8, 3), dtype=np.uint8), patch_size=4, size=64)
    with pytest.raises(ShapeError, match="expected \\[K, 48\\]"):
        PatchCodebook(torch.zeros(3, 5), 4)
    with pytest.raises(ConfigError, match="trained without the draw task"):
        PatchCodebook.load(tmp_path)
