"""Compositional scenes of real object images, and the captions, questions and retrieval texts derived from them.

A scene places 1-4 objects (Fashion-MNIST items, emoji, flags: `frontier.multimodal.sources`) in the cells of a 2×2
grid on a noisy dark canvas; grey Fashion-MNIST items may be tinted a colour. Everything textual is read off the
scene graph, never written by hand, so every caption and answer is right by construction:

    caption   "a red sneaker in the top left and a bag to the right of it and a flag of france in the bottom left":
              each object after the first is placed from the one before it when they share a row or column, else
              by its cell
    VQA       what is in the top left ? → red sneaker · where is the sneaker ? → top left · what is below the
              sneaker ? → flag of france · how many objects are there ? → two · what colour is the sneaker ? → red ·
              is there a bag ? → no

Scene i of a split is a function of (seed, split, i) alone. Splits: `train`; `test` (same distribution, Fashion-MNIST
test images); `zero-shot` (every scene shows a combination that training never shows: an (object, colour) pair or an
(object, cell) pair, each object and each colour and cell still seen in training); `few-shot` (every scene shows a
held-out object that training shows in only `few_shot_k` scenes). Every split but `train` draws its images from the
"test" catalog when one is given.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from frontier.errors import ConfigError
from frontier.multimodal.sources import ObjectImage

CELLS = ("top left", "top right", "bottom left", "bottom right")
COLOURS = {"red": (235, 50, 45), "green": (60, 200, 70), "blue": (60, 110, 245), "yellow": (245, 215, 40)}
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
SPLITS = ("train", "test", "zero-shot", "few-shot")
TASKS = ("caption", "vqa", "retrieval", "draw")
READING_TASKS = TASKS[:3]  # the default: drawing needs a patch codebook and is opt-in
QUESTION_TYPES = ("what", "where", "relation", "count", "colour", "exists")


@dataclass(frozen=True)
class PlacedObject:
    name: str
    category: str
    source: str
    cell: str
    colour: str | None  # a tint from COLOURS, only for tintable (grey) objects
    instance: int  # index into the catalog's images of this name

    @property
    def phrase(self) -> str:
        """'red sneaker', 'flag of france'."""
        return f"{self.colour} {self.name}" if self.colour else self.name


@dataclass(frozen=True)
class Scene:
    objects: tuple[PlacedObject, ...]  # in CELLS order
    background_seed: int


@dataclass(frozen=True)
class Example:
    """One training or evaluation item of a scene: the model reads `prompt` (after the image) and must produce
    `target`. Retrieval examples carry the caption as `target` and no prompt."""

    task: str
    prompt: str
    target: str
    question_type: str | None = None


@dataclass(frozen=True)
class SceneConfig:
    image_size: int = 64
    max_objects: int = 4
    tint_probability: float = 0.7  # of a tintable object
    few_shot_names: tuple[str, ...] = ()
    few_shot_k: int = 4  # training scenes that show a few-shot name
    heldout_pairs: tuple[tuple[str, str], ...] = ()  # (name, colour) never in training
    heldout_cells: tuple[tuple[str, str], ...] = ()  # (name, cell) never in training
    # "what is above the sneaker ?": off in scene configs saved before these questions existed (2026-12-07), whose
    # models know none of their words.
    relation_questions: bool = True
    # "… and a flag of france below it": off in scene configs saved before relational captions (2026-12-07), whose
    # captions name every object's cell.
    relation_captions: bool = True
    seed: int = 0


def spatial_relation(cell: str, anchor: str) -> str | None:
    """Where `cell` lies from `anchor` in the 2×2 grid: "above", "below", "left of", "right of", or None (the same
    cell, or diagonal, which no single word names)."""
    (row, col), (anchor_row, anchor_col) = divmod(CELLS.index(cell), 2), divmod(CELLS.index(anchor), 2)
    if col == anchor_col and row != anchor_row:
        return "above" if row < anchor_row else "below"
    if row == anchor_row and col != anchor_col:
        return "left of" if col < anchor_col else "right of"
    return None


# How a caption says where an object lies from the one before it ("below it", "to the right of it").
CAPTION_RELATIONS = {"above": "above", "below": "below", "left of": "to the left of", "right of": "to the right of"}


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def default_heldout_pairs(tintable_names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """One colour per tintable name, rotating through COLOURS: every name and every colour stays in training."""
    colours = list(COLOURS)
    return tuple((name, colours[i % len(colours)]) for i, name in enumerate(sorted(tintable_names)))


def default_heldout_cells(names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """One cell per name, rotating through CELLS: training shows each name in the other three cells."""
    return tuple((name, CELLS[i % len(CELLS)]) for i, name in enumerate(sorted(names)))


class SceneGenerator:
    """Draws scenes from a catalog of object images and renders them; see the module docstring."""

    def __init__(self, catalogs: dict[str, Sequence[ObjectImage]], config: SceneConfig = SceneConfig()):
        """`catalogs` maps a split's image source ("train" / "test") to its object images; names must agree."""
        if not 1 <= config.max_objects <= len(CELLS):
            raise ConfigError(f"max_objects must be in 1..{len(CELLS)}, got {config.max_objects}")
        self.config = config
        self.by_name: dict[str, dict[str, list[ObjectImage]]] = {}
        for split, objects in catalogs.items():
            grouped: dict[str, list[ObjectImage]] = {}
            for obj in objects:
                grouped.setdefault(obj.name, []).append(obj)
            self.by_name[split] = grouped
        names = {split: sorted(grouped) for split, grouped in self.by_name.items()}
        self.names = names["train"]
        if any(other != self.names for other in names.values()):
            raise ConfigError("every catalog must hold the same object names (e.g. Fashion-MNIST train and test)")
        self.tintable = {n for n in self.names if self.by_name["train"][n][0].source == "fashion-mnist"}
        unknown = [n for n in config.few_shot_names if n not in self.names]
        if unknown:
            raise ConfigError(f"few-shot names not in the catalog: {unknown}")
        self.heldout = set(config.heldout_pairs)
        bad = sorted(p for p in self.heldout if p[0] not in self.tintable or p[1] not in COLOURS)
        if bad:
            raise ConfigError(f"held-out pairs must pair a tintable (grey) object with one of {', '.join(COLOURS)}: "
                              f"{bad}")  # fmt: skip
        self.heldout_cells = set(config.heldout_cells)
        bad = sorted(p for p in self.heldout_cells if p[0] not in self.names or p[1] not in CELLS)
        if bad:
            raise ConfigError(f"held-out cells must pair an object of the catalog with one of {', '.join(CELLS)}: "
                              f"{bad}")  # fmt: skip
        self.common_names = [n for n in self.names if n not in config.few_shot_names]
        # Drawn per cell, so held-out cells cost no rejections (held-out colours still do, a few per hundred scenes).
        self.names_for_cell = [[n for n in self.common_names if (n, cell) not in self.heldout_cells] for cell in CELLS]
        if not all(self.names_for_cell):
            raise ConfigError("the held-out cells leave a cell with no object that training may place there")

    @property
    def few_shot_train_scenes(self) -> int:
        """The training scenes [0, this) are the ones that show a few-shot name, `few_shot_k` per name."""
        return self.config.few_shot_k * len(self.config.few_shot_names)

    def catalog_split(self, split: str) -> str:
        return "train" if split == "train" or "test" not in self.by_name else "test"

    def scene(self, split: str, index: int) -> Scene:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        cfg = self.config
        rng = random.Random(f"{cfg.seed}/{split}/{index}")
        few_shot_scene = split == "few-shot" or (split == "train" and index < self.few_shot_train_scenes)
        for _ in range(1000):  # rejection sampling: a few tries suffice for any split
            count = rng.randint(1, cfg.max_objects)
            cells = sorted(rng.sample(range(len(CELLS)), count))
            names = [rng.choice(self.names_for_cell[cell]) for cell in cells]
            if few_shot_scene:
                which = index % len(cfg.few_shot_names) if split == "train" else rng.randrange(len(cfg.few_shot_names))
                names[rng.randrange(count)] = cfg.few_shot_names[which]
            colours = [self._tint(n, rng) for n in names]
            if split == "zero-shot" and not self._place_unseen_combination(rng, cells, names, colours):
                continue
            if split != "zero-shot" and self.unseen_combinations(cells, names, colours):
                continue
            images = self.by_name[self.catalog_split(split)]
            objects = tuple(
                PlacedObject(n, images[n][0].category, images[n][0].source, CELLS[cell], colour,
                             rng.randrange(len(images[n])))
                for cell, n, colour in zip(cells, names, colours, strict=True)
            )  # fmt: skip
            return Scene(objects, background_seed=rng.getrandbits(32))
        raise ConfigError(f"could not draw a {split} scene: the held-out pairs exclude nearly every combination")

    def _tint(self, name: str, rng: random.Random) -> str | None:
        return (
            rng.choice(list(COLOURS)) if name in self.tintable and rng.random() < self.config.tint_probability else None
        )

    def unseen_combinations(self, cells: Sequence[int], names: Sequence[str], colours: Sequence[str | None]) -> list:
        """The held-out (name, colour) and (name, cell) pairs among these objects: training never shows one."""
        found = [(n, c) for n, c in zip(names, colours, strict=True) if (n, c) in self.heldout]
        return found + [(n, CELLS[c]) for n, c in zip(names, cells, strict=True) if (n, CELLS[c]) in self.heldout_cells]

    def novel_names(self, scene: Scene, split: str) -> set[str]:
        """The objects that make `scene` held out: on the zero-shot split, those in a combination training never shows
        (item–colour or item–cell); on the few-shot split, the few-shot objects. Empty on the other splits."""
        if split == "zero-shot":
            cells, names, colours = ([CELLS.index(o.cell) for o in scene.objects], [o.name for o in scene.objects],
                                     [o.colour for o in scene.objects])  # fmt: skip
            return {name for name, _ in self.unseen_combinations(cells, names, colours)}
        if split == "few-shot":
            return {o.name for o in scene.objects if o.name in self.config.few_shot_names}
        return set()

    def _place_unseen_combination(self, rng: random.Random, cells: list[int], names: list[str], colours: list) -> bool:
        """Overwrite one object of a zero-shot scene with a held-out combination, of a kind drawn at random among
        those configured; False when none fits these cells."""
        kinds = [kind for kind, pairs in (("colour", self.heldout), ("cell", self.heldout_cells)) if pairs]
        if not kinds:
            return True  # nothing is held out: the zero-shot split is the test distribution
        # One kind: no draw, so configurations without held-out cells keep the zero-shot scenes they always had.
        if (kinds[0] if len(kinds) == 1 else rng.choice(kinds)) == "colour":
            slot = rng.randrange(len(cells))
            names[slot], colours[slot] = rng.choice(sorted(self.heldout))
            return True
        fitting = sorted((n, cell) for n, cell in self.heldout_cells if CELLS.index(cell) in cells)
        if not fitting:
            return False
        name, cell = rng.choice(fitting)
        slot = cells.index(CELLS.index(cell))
        names[slot], colours[slot] = name, self._tint(name, rng)
        return True

    def render(self, scene: Scene, split: str) -> np.ndarray:
        """uint8 [size, size, 3]: noisy dark background, each object alpha-composited into its cell."""
        size = self.config.image_size
        noise = np.random.default_rng(scene.background_seed)
        canvas = np.clip(40 + noise.normal(0, 8, (size, size, 3)), 0, 255)
        half, margin = size // 2, max(1, size // 32)
        images = self.by_name[self.catalog_split(split)]
        box = half - 2 * margin
        for obj in scene.objects:
            source = images[obj.name][obj.instance].rgba
            scale = box / max(source.shape[:2])  # fit the longer side, keep the aspect (flags are 1:2)
            width, height = max(1, round(source.shape[1] * scale)), max(1, round(source.shape[0] * scale))
            rgba = np.asarray(Image.fromarray(source, "RGBA").resize((width, height), Image.BILINEAR), np.float64)
            rgb, alpha = rgba[..., :3], rgba[..., 3:] / 255.0
            if obj.colour:
                rgb = rgb * np.array(COLOURS[obj.colour]) / 255.0
            row, col = divmod(CELLS.index(obj.cell), 2)
            y, x = row * half + margin + (box - height) // 2, col * half + margin + (box - width) // 2
            region = canvas[y : y + rgb.shape[0], x : x + rgb.shape[1]]
            canvas[y : y + rgb.shape[0], x : x + rgb.shape[1]] = alpha * rgb + (1 - alpha) * region
        return canvas.round().astype(np.uint8)

    def caption(self, scene: Scene) -> str:
        """The objects in CELLS order, each after the first placed from the one before it where a single word can
        ("below it"), else by its cell: with the first object's cell, the caption still fixes every position."""
        parts, previous = [], None
        for o in scene.objects:
            relation = spatial_relation(o.cell, previous.cell) if previous and self.config.relation_captions else None
            where = f"{CAPTION_RELATIONS[relation]} it" if relation else f"in the {o.cell}"
            parts.append(f"{article(o.phrase)} {where}")
            previous = o
        return " and ".join(parts)

    def questions(self, scene: Scene, rng: random.Random, split: str) -> list[Example]:
        """One question of each type that the scene can answer unambiguously. A training scene never asks about an
        absent few-shot class ("is there a guitar? no"): those classes appear in the training text only with their
        k training images."""
        counts: dict[str, int] = {}
        for o in scene.objects:
            counts[o.name] = counts.get(o.name, 0) + 1
        unique = [o for o in scene.objects if counts[o.name] == 1]
        asked: list[tuple[str, str, str]] = []
        o = rng.choice(scene.objects)
        asked.append(("what", f"what is in the {o.cell} ?", o.phrase))
        if unique:
            o = rng.choice(unique)
            asked.append(("where", f"where is the {o.name} ?", o.cell))
        # One object per cell, so a named anchor and a direction name exactly one other object.
        related = [(anchor, other, relation) for anchor in unique for other in scene.objects
                   if (relation := spatial_relation(other.cell, anchor.cell))]  # fmt: skip
        if related and self.config.relation_questions:
            anchor, other, relation = rng.choice(related)
            asked.append(("relation", f"what is {relation} the {anchor.name} ?", other.phrase))
        asked.append(("count", "how many objects are there ?", NUMBER_WORDS[len(scene.objects)]))
        tinted = [o for o in unique if o.colour]
        if tinted:
            o = rng.choice(tinted)
            asked.append(("colour", f"what colour is the {o.name} ?", o.colour))
        if rng.random() < 0.5:
            asked.append(("exists", f"is there {article(rng.choice(scene.objects).name)} ?", "yes"))
        elif absent := [n for n in (self.common_names if split == "train" else self.names) if n not in counts]:
            asked.append(("exists", f"is there {article(rng.choice(absent))} ?", "no"))
        return [Example("vqa", f"question : {q} answer :", a, kind) for kind, q, a in asked]

    def examples(self, scene: Scene, split: str, index: int) -> list[Example]:
        """The scene's caption, its questions and its retrieval text."""
        rng = random.Random(f"{self.config.seed}/{split}/{index}/questions")
        caption = self.caption(scene)
        return [
            Example("caption", "caption :", caption),
            *self.questions(scene, rng, split),
            Example("retrieval", "", caption),
        ]

    def vocabulary(self) -> list[str]:
        """Every word any caption, question or answer can use, sorted."""
        words = {"a", "an", "and", "in", "the", "caption", "question", "answer", ":", "?", "is", "there", "what",
                 "where", "how", "many", "objects", "are", "colour", "yes", "no", *NUMBER_WORDS, *COLOURS}  # fmt: skip
        if self.config.relation_questions:
            words |= {"above", "below", "of"}
        if self.config.relation_captions:
            words |= {w for phrase in CAPTION_RELATIONS.values() for w in phrase.split()} | {"it"}
        words |= {w for cell in CELLS for w in cell.split()}
        words |= {w for name in self.names for w in name.split()}
        return sorted(words)
