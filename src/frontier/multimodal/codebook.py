"""Discrete image patches for drawing: a k-means codebook over the P×P pixel patches of training scenes.

An image becomes its grid of patch codes (the nearest centroid of each patch) and codes become an image again by
placing the centroids: what the unified model emits when it draws. k-means rather than a trained VQ-VAE keeps the
tokenizer small, deterministic and fast to fit on a CPU; its reconstruction error is measured and reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from frontier.errors import ConfigError, ShapeError

CODEBOOK_NAME = "codebook.safetensors"


class PatchCodebook:
    """`centroids` [K, P·P·3] float32 in pixel units (0-255) for `patch_size` P."""

    def __init__(self, centroids: torch.Tensor, patch_size: int) -> None:
        if centroids.dim() != 2 or centroids.shape[1] != patch_size * patch_size * 3:
            raise ShapeError(f"centroids have shape {tuple(centroids.shape)}; expected [K, {patch_size**2 * 3}]")
        self.centroids = centroids.float()
        self.patch_size = patch_size

    @property
    def size(self) -> int:
        return self.centroids.shape[0]

    def patches(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [B, H, W, 3] → float [B, (H/P)·(W/P), P·P·3], patches in raster order."""
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] % self.patch_size:
            raise ShapeError(f"images have shape {images.shape}; expected [B, H, W, 3] with H a multiple of "
                             f"{self.patch_size}")  # fmt: skip
        B, H, W, _ = images.shape
        P = self.patch_size
        x = torch.from_numpy(np.ascontiguousarray(images)).float()
        return x.reshape(B, H // P, P, W // P, P, 3).permute(0, 1, 3, 2, 4, 5).reshape(B, (H // P) * (W // P), -1)

    def encode(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [B, H, W, 3] → code ids [B, patches] (nearest centroid)."""
        patches = self.patches(images)
        return torch.cdist(patches, self.centroids[None].expand(len(patches), -1, -1)).argmin(-1)

    def decode(self, codes: torch.Tensor, side: int) -> np.ndarray:
        """code ids [B, patches] → uint8 [B, side, side, 3]."""
        P, n = self.patch_size, side // self.patch_size
        if codes.shape[-1] != n * n:
            raise ShapeError(f"{codes.shape[-1]} codes do not tile a {side}×{side} image of {P}×{P} patches")
        pixels = self.centroids[codes.long()].reshape(len(codes), n, n, P, P, 3).permute(0, 1, 3, 2, 4, 5)
        return pixels.reshape(len(codes), side, side, 3).round().clamp(0, 255).to(torch.uint8).numpy()

    def save(self, folder: Path) -> None:
        from safetensors.torch import save

        from frontier.io import atomic_write_bytes

        metadata = {"patch_size": str(self.patch_size)}
        atomic_write_bytes(Path(folder) / CODEBOOK_NAME, save({"centroids": self.centroids}, metadata=metadata))

    @classmethod
    def load(cls, folder: Path) -> PatchCodebook:
        from safetensors import safe_open

        path = Path(folder) / CODEBOOK_NAME
        if not path.is_file():
            raise ConfigError(f"{path} is missing: this model was trained without the draw task")
        with safe_open(path, "pt") as f:
            return cls(f.get_tensor("centroids"), int(f.metadata()["patch_size"]))


def fit_codebook(images: np.ndarray, patch_size: int, size: int, iterations: int = 20, seed: int = 0) -> PatchCodebook:
    """k-means (k-means++ seeding, Lloyd iterations) over every patch of `images` (uint8 [B, H, W, 3])."""
    points = PatchCodebook(torch.zeros(1, patch_size * patch_size * 3), patch_size).patches(images).flatten(0, 1)
    if len(points) < size:
        raise ConfigError(f"{len(points)} patches cannot make {size} codes; give more images")
    gen = torch.Generator().manual_seed(seed)
    centroids = points[torch.randint(len(points), (1,), generator=gen)]
    nearest = torch.cdist(points, centroids).squeeze(1) ** 2
    for _ in range(1, size):  # k-means++: each new centre drawn in proportion to its squared distance
        pick = torch.multinomial(nearest / nearest.sum() if nearest.sum() > 0 else torch.ones_like(nearest), 1,
                                 generator=gen)  # fmt: skip
        centroids = torch.cat([centroids, points[pick]])
        nearest = torch.minimum(nearest, ((points - points[pick]) ** 2).sum(-1))
    for _ in range(iterations):
        assign = torch.cdist(points, centroids).argmin(-1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=size).float()[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)  # an empty cluster keeps its centre
    return PatchCodebook(centroids, patch_size)
