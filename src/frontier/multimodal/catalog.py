"""The default object pool of the multimodal scenes: 10 Fashion-MNIST classes, 12 emoji, 8 national flags.

Fashion-MNIST items come in many images each, split as Zalando split them (training scenes draw from the train
file, test scenes from the t10k file); an emoji or a flag has one image, shared by every split, so for them the test
split differs from training only in composition. The pool is small on purpose: a model trained from scratch on a
CPU sees each name often enough in a few thousand steps.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from frontier.errors import ConfigError
from frontier.multimodal.scenes import SceneConfig, SceneGenerator, default_heldout_cells, default_heldout_pairs
from frontier.multimodal.sources import FASHION_CLASSES, ObjectImage, emoji_objects, fashion_objects, flag_objects

DEFAULT_EMOJI = (
    "red apple", "banana", "grapes", "hamburger", "cat face", "dog face", "butterfly", "deciduous tree", "rocket",
    "bicycle", "soccer ball", "guitar",
)  # fmt: skip
DEFAULT_FLAGS = tuple(f"flag of {c}" for c in ("brazil", "canada", "france", "germany", "india", "italy", "japan",
                                               "sweden"))  # fmt: skip
# Shown in only `few_shot_k` training scenes each: the few-shot split asks about them. The ankle boot's few-shot
# scenes show Fashion-MNIST test images, which no training scene shows; an emoji or a flag has only its one image.
DEFAULT_FEW_SHOT = ("guitar", "flag of sweden", "ankle boot")
TRAIN_PER_CLASS, TEST_PER_CLASS = 2000, 200  # Fashion-MNIST images kept per class


def default_catalogs(train_per_class: int = TRAIN_PER_CLASS, test_per_class: int = TEST_PER_CLASS) -> dict:
    """{"train": objects, "test": objects} of the default pool; fetches the three packages on first use."""
    wanted = set(DEFAULT_EMOJI) | set(DEFAULT_FLAGS)
    shared: list[ObjectImage] = [o for o in emoji_objects() + flag_objects() if o.name in wanted]
    found = {o.name for o in shared}
    if found != wanted:
        raise ConfigError(f"the image packages lack {sorted(wanted - found)}; the pinned versions should have them")
    shared = list({o.name: o for o in shared}.values())  # one image per name
    return {
        "train": fashion_objects("train", per_class=train_per_class) + shared,
        "test": fashion_objects("test", per_class=test_per_class) + shared,
    }


def default_scene_config(**overrides) -> SceneConfig:
    """Few-shot names: DEFAULT_FEW_SHOT. Held out of training, for every other name: one cell each, and for
    Fashion-MNIST classes one colour each."""
    common = [n for n in (*FASHION_CLASSES, *DEFAULT_EMOJI, *DEFAULT_FLAGS) if n not in DEFAULT_FEW_SHOT]
    config = SceneConfig(
        heldout_pairs=default_heldout_pairs([n for n in FASHION_CLASSES if n in common]),
        heldout_cells=default_heldout_cells(common),
        few_shot_names=DEFAULT_FEW_SHOT,
    )
    return replace(config, **overrides)


def default_generator(config: SceneConfig | None = None) -> SceneGenerator:
    return SceneGenerator(default_catalogs(), config or default_scene_config())


def scene_config_from_dict(data: dict) -> SceneConfig:
    """The inverse of `asdict(SceneConfig)` after a JSON round trip (lists back to tuples)."""
    known = set(asdict(SceneConfig()))
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown scene settings {unknown}; this frontier knows {sorted(known)}")
    data = dict(data)
    data["few_shot_names"] = tuple(data.get("few_shot_names", ()))
    data["heldout_pairs"] = tuple(tuple(pair) for pair in data.get("heldout_pairs", ()))
    data["heldout_cells"] = tuple(tuple(pair) for pair in data.get("heldout_cells", ()))
    data.setdefault("relation_questions", False)  # saved before relation questions existed
    data.setdefault("relation_captions", False)  # saved before relational captions existed
    return SceneConfig(**data)
