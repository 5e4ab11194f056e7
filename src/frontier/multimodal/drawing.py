"""Judging drawn images: does the picture show what its description asked for?

A small CNN (the judge) is trained on the cells of real rendered scenes to name the object in a cell ("empty" for
none) and its tint ("none" for untinted). A drawing of "a red sneaker in the top left" is then right about an object
when the judge, reading the drawn top-left cell, says sneaker, and right about its colour when it says red; empty
cells must read empty. The judge's own accuracy on real test scenes is the ceiling, and so is its score on the
codebook's reconstructions of the real images (what drawing with these patch codes can reach at best). A Fréchet
distance between the judge's features of drawn and real cells scores how real the drawings look (FID's recipe with
a judge trained here, since no pretrained Inception ships offline).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from frontier.console import progress_steps
from frontier.multimodal.scenes import CELLS, COLOURS, Scene, SceneGenerator

EMPTY, UNTINTED = "empty", "none"


class CellJudge(nn.Module):
    """Conv net over one cell (RGB, half the scene's side): object name (or empty) and tint (or none)."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = [*names, EMPTY]
        self.colours = [*COLOURS, UNTINTED]
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.name_head = nn.Linear(64, len(self.names))
        self.colour_head = nn.Linear(64, len(self.colours))

    def forward(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8-valued cells [N, h, w, 3] → (name logits, colour logits, features [N, 64])."""
        x = cells.permute(0, 3, 1, 2).float() / 127.5 - 1
        features = self.features(x)
        return self.name_head(features), self.colour_head(features), features


def scene_cells(image: np.ndarray) -> np.ndarray:
    """[S, S, 3] → the four cells [4, S/2, S/2, 3] in CELLS order."""
    half = image.shape[0] // 2
    return np.stack([image[r * half : (r + 1) * half, c * half : (c + 1) * half] for r in range(2) for c in range(2)])


def cell_labels(judge: CellJudge, scene: Scene) -> tuple[list[int], list[int]]:
    """Name and colour class of each of the four cells of `scene`."""
    by_cell = {o.cell: o for o in scene.objects}
    names = [judge.names.index(by_cell[c].name) if c in by_cell else judge.names.index(EMPTY) for c in CELLS]
    colours = [judge.colours.index((by_cell[c].colour if c in by_cell else None) or UNTINTED) for c in CELLS]
    return names, colours


def train_judge(generator: SceneGenerator, steps: int = 400, batch: int = 32, seed: int = 0,
                progress: bool = True) -> CellJudge:  # fmt: skip
    """Fit the judge on the cells of training scenes (all splits' objects appear there except held-out pairs)."""
    torch.manual_seed(seed)
    judge = CellJudge(generator.names)
    optimizer = torch.optim.Adam(judge.parameters(), lr=2e-3)
    rng = random.Random(f"{seed}/judge")
    with progress_steps("training the drawing judge", total=steps, enabled=progress) as advance:
        for _ in range(steps):
            scenes = [generator.scene("train", rng.randrange(1_000_000)) for _ in range(batch)]
            cells = torch.from_numpy(np.concatenate([scene_cells(generator.render(s, "train")) for s in scenes]))
            labels = [cell_labels(judge, s) for s in scenes]
            names = torch.tensor([n for name_row, _ in labels for n in name_row])
            colours = torch.tensor([c for _, colour_row in labels for c in colour_row])
            name_logits, colour_logits, _ = judge(cells)
            loss = F.cross_entropy(name_logits, names) + F.cross_entropy(colour_logits, colours)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            advance()
    return judge.eval()


@torch.no_grad()
def judge_images(judge: CellJudge, images: Sequence[np.ndarray], scenes: Sequence[Scene]) -> dict:
    """How often `images` show their scenes: object, colour, empty-cell and whole-scene accuracy, and features."""
    cells = torch.from_numpy(np.concatenate([scene_cells(image) for image in images]))
    name_logits, colour_logits, features = judge(cells)
    names, colours = name_logits.argmax(-1).view(-1, 4), colour_logits.argmax(-1).view(-1, 4)
    object_hits, colour_hits, empty_hits, scene_hits = [], [], [], []
    for i, scene in enumerate(scenes):
        want_names, want_colours = cell_labels(judge, scene)
        right = []
        for cell in range(4):
            name_ok = names[i, cell].item() == want_names[cell]
            if judge.names[want_names[cell]] == EMPTY:
                empty_hits.append(name_ok)
            else:
                object_hits.append(name_ok)
            if judge.colours[want_colours[cell]] != UNTINTED:
                colour_hits.append(colours[i, cell].item() == want_colours[cell])
            right.append(name_ok and colours[i, cell].item() == want_colours[cell])
        scene_hits.append(all(right))

    def share(hits: list[bool]) -> float:
        return sum(hits) / len(hits) if hits else float("nan")

    return {
        "object_accuracy": share(object_hits),
        "colour_accuracy": share(colour_hits),
        "empty_cell_accuracy": share(empty_hits),
        "scene_accuracy": share(scene_hits),
        "objects": len(object_hits),
        "features": features,
    }


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, d] (FID's formula). ReLU features have
    dead dimensions, so the covariances are singular and sqrtm's warning about it is expected; like FID, the
    figure is biased upwards at small N and compares runs only at equal N."""
    a64, b64 = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    cov_a, cov_b = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))


@torch.no_grad()
def evaluate_drawing(
    model, tokenizer, codebook, generator: SceneGenerator, judge: CellJudge, split: str, count: int,
    batch_size: int = 32, progress: bool = False, guidance: float = 1.0,
) -> tuple[dict, list[list[np.ndarray]]]:  # fmt: skip
    """Draw each scene of `split` from its caption (greedy, with classifier-free `guidance`) and judge it; the real
    images and their codebook reconstructions are judged alike as ceilings. Returns (metrics, [real, reconstructed,
    drawn] image rows of the first scenes)."""
    from frontier.multimodal.processing import text_batch

    model.eval()
    scenes = [generator.scene(split, i) for i in range(count)]
    real = [generator.render(s, split) for s in scenes]
    side = generator.config.image_size
    reconstructed = list(codebook.decode(codebook.encode(np.stack(real)), side))
    drawn: list[np.ndarray] = []
    starts = range(0, count, batch_size)
    with progress_steps(f"drawing {split} scenes", total=len(starts), enabled=progress) as advance:
        for start in starts:
            texts = text_batch(tokenizer, [generator.caption(s) for s in scenes[start : start + batch_size]])
            codes = model.draw(texts["input_ids"], texts["attention_mask"], guidance=guidance)
            drawn += list(codebook.decode(codes, side))
            advance()
    scores = {name: judge_images(judge, images, scenes)
              for name, images in (("real", real), ("reconstructed", reconstructed), ("drawn", drawn))}  # fmt: skip
    metrics = {"split": split, "scenes": count, "guidance": guidance}
    for name, score in scores.items():
        metrics[name] = {k: v for k, v in score.items() if k != "features"}
    for name in ("reconstructed", "drawn"):
        distance = frechet_distance(scores[name]["features"], scores["real"]["features"])
        metrics[name]["frechet_distance_to_real"] = distance
    metrics["captions"] = [generator.caption(s) for s in scenes[:8]]
    return metrics, [real[:8], reconstructed[:8], drawn[:8]]


def save_grid(rows: Sequence[Sequence[np.ndarray]], path, scale: int = 2) -> None:
    """Images in a grid (one list per row), upscaled `scale`× with nearest neighbours, as a PNG."""
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    image = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    image.save(path)
