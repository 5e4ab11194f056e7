"""Scenes: deterministic, texts true to the scene graph, held-out combinations kept out of training."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from frontier.errors import ConfigError
from frontier.multimodal.scenes import (
    CELLS,
    COLOURS,
    NUMBER_WORDS,
    SceneConfig,
    SceneGenerator,
    article,
    default_heldout_cells,
    spatial_relation,
)

HELDOUT = (("sneaker", "red"), ("bag", "blue"))


def generator(catalogs, **kwargs) -> SceneGenerator:
    return SceneGenerator(catalogs, SceneConfig(image_size=32, heldout_pairs=HELDOUT, **kwargs))


def test_scenes_are_a_function_of_seed_split_and_index(tiny_catalogs):
    gen = generator(tiny_catalogs)
    assert gen.scene("train", 7) == generator(tiny_catalogs).scene("train", 7)
    assert np.array_equal(gen.render(gen.scene("test", 3), "test"), gen.render(gen.scene("test", 3), "test"))
    assert gen.scene("train", 7) != gen.scene("train", 8)
    assert generator(tiny_catalogs, seed=1).scene("train", 7) != gen.scene("train", 7)


def test_heldout_pairs_appear_only_in_the_zero_shot_split(tiny_catalogs):
    gen = generator(tiny_catalogs)
    for split in ("train", "test"):
        for i in range(300):
            pairs = {(o.name, o.colour) for o in gen.scene(split, i).objects}
            assert not pairs & set(HELDOUT), (split, i)
    for i in range(50):
        assert {(o.name, o.colour) for o in gen.scene("zero-shot", i).objects} & set(HELDOUT)


def test_heldout_cells_appear_only_in_the_zero_shot_split_and_every_scene_size_stays_likely(tiny_catalogs):
    names = ("sneaker", "bag", "coat", "apple", "flag of france")
    cells = default_heldout_cells(names)
    assert {cell for _, cell in cells} == set(CELLS) and len(cells) == len(names)
    gen = generator(tiny_catalogs, heldout_cells=cells)
    sizes = []
    for split in ("train", "test"):
        for i in range(300):
            scene = gen.scene(split, i)
            assert not {(o.name, o.cell) for o in scene.objects} & set(cells), (split, i)
            assert not {(o.name, o.colour) for o in scene.objects} & set(HELDOUT), (split, i)
            sizes.append(len(scene.objects))
    assert all(sizes.count(n) > 100 for n in range(1, 5))  # drawn per cell, not rejected: sizes stay uniform
    kinds = {"colour": 0, "cell": 0}
    for i in range(100):
        objects = gen.scene("zero-shot", i).objects
        by_colour = {(o.name, o.colour) for o in objects} & set(HELDOUT)
        by_cell = {(o.name, o.cell) for o in objects} & set(cells)
        assert by_colour or by_cell, i
        kinds["colour"] += bool(by_colour)
        kinds["cell"] += bool(by_cell)
    assert min(kinds.values()) > 25  # both kinds of unseen combination are tested


def test_few_shot_names_are_in_exactly_k_training_scenes(tiny_catalogs):
    gen = generator(tiny_catalogs, few_shot_names=("apple",), few_shot_k=3)
    shown = [i for i in range(200) if any(o.name == "apple" for o in gen.scene("train", i).objects)]
    assert shown == [0, 1, 2]
    assert all(any(o.name == "apple" for o in gen.scene("few-shot", i).objects) for i in range(20))
    # Nor does any other training text name it, e.g. as the absent object of "is there an apple? no".
    texts = [
        f"{ex.prompt} {ex.target}" for i in range(3, 400) for ex in gen.examples(gen.scene("train", i), "train", i)
    ]
    assert not [text for text in texts if "apple" in text]
    asked_elsewhere = [ex.prompt for i in range(400) for ex in gen.examples(gen.scene("test", i), "test", i)]
    assert any("is there an apple ?" in prompt for prompt in asked_elsewhere)  # test scenes still ask about it


def test_novel_names_are_what_makes_a_scene_held_out(tiny_catalogs):
    from frontier.multimodal.evaluation import mentions

    gen = generator(tiny_catalogs, few_shot_names=("apple",), few_shot_k=3)
    for i in range(30):
        zero = gen.scene("zero-shot", i)
        unseen = gen.unseen_combinations([CELLS.index(o.cell) for o in zero.objects],
                                         [o.name for o in zero.objects], [o.colour for o in zero.objects])  # fmt: skip
        assert gen.novel_names(zero, "zero-shot") == {name for name, _ in unseen} != set()
        assert gen.novel_names(gen.scene("few-shot", i), "few-shot") == {"apple"}
        assert gen.novel_names(gen.scene("test", i), "test") == set()
    assert mentions("where is the shirt ?", "shirt") and not mentions("where is the t-shirt ?", "shirt")
    assert mentions("a flag of france", "flag of france") and not mentions("a red sneakers", "sneaker")


def test_texts_are_read_off_the_scene(tiny_catalogs):
    gen = generator(tiny_catalogs)
    relations_asked = relational_captions = 0
    for i in range(100):
        scene = gen.scene("train", i)
        examples = gen.examples(scene, "train", i)
        caption = examples[0].target
        assert cells_read_off(caption) == [(o.phrase, o.cell) for o in scene.objects]
        relational_captions += bool(re.search(r" it\b", caption))  # not "italy"
        answers = {ex.question_type: (ex.prompt, ex.target) for ex in examples if ex.task == "vqa"}
        assert answers["count"][1] == NUMBER_WORDS[len(scene.objects)]
        cell = answers["what"][0].split("in the ")[1].removesuffix(" ? answer :")
        assert answers["what"][1] == next(o.phrase for o in scene.objects if o.cell == cell)
        if "colour" in answers:
            name = answers["colour"][0].split("is the ")[1].removesuffix(" ? answer :")
            assert answers["colour"][1] == next(o.colour for o in scene.objects if o.name == name)
        if "relation" in answers:
            relation, name = answers["relation"][0].removeprefix("question : what is ").split(" the ", 1)
            anchor = next(o for o in scene.objects if o.name == name.removesuffix(" ? answer :"))
            row, col = divmod(CELLS.index(anchor.cell), 2)
            row, col = {"above": (row - 1, col), "below": (row + 1, col), "left of": (row, col - 1),
                        "right of": (row, col + 1)}[relation]  # fmt: skip
            assert answers["relation"][1] == next(o.phrase for o in scene.objects if o.cell == CELLS[2 * row + col])
        relations_asked += "relation" in answers
        present = {o.name for o in scene.objects}
        asked = answers["exists"][0].split("is there ")[1].removesuffix(" ? answer :").split(" ", 1)[1]
        assert answers["exists"][1] == ("yes" if asked in present else "no")
        assert examples[-1].task == "retrieval" and examples[-1].target == caption
    assert relations_asked > 25  # a scene asks one when a uniquely named object has a neighbour in its row or column
    assert relational_captions > 25


def cells_read_off(caption: str) -> list[tuple[str, str]]:
    """(phrase, cell) of each object a caption names, following "below it" from the object before."""
    steps = {"above": (-1, 0), "below": (1, 0), "to the left of": (0, -1), "to the right of": (0, 1)}
    found = []
    for part in caption.split(" and "):
        phrase = part.split(" ", 1)[1]  # drop the article
        if " in the " in phrase:
            phrase, cell = phrase.split(" in the ")
        else:
            relation = next(r for r in steps if phrase.endswith(f" {r} it"))
            phrase = phrase.removesuffix(f" {relation} it")
            row, col = divmod(CELLS.index(found[-1][1]), 2)
            cell = CELLS[2 * (row + steps[relation][0]) + col + steps[relation][1]]
        found.append((phrase, cell))
    return found


def test_scene_configs_saved_before_relations_keep_their_captions_questions_and_words(tiny_catalogs):
    from dataclasses import asdict

    from frontier.multimodal.catalog import scene_config_from_dict

    saved = asdict(SceneConfig(image_size=32, heldout_pairs=HELDOUT))
    del saved["relation_questions"], saved["relation_captions"]  # as scene_config.json was before 2026-12-07
    old = SceneGenerator(tiny_catalogs, scene_config_from_dict(saved))
    new = generator(tiny_catalogs)
    assert not {"above", "below", "it", "to"} & set(old.vocabulary())
    assert {"above", "below", "it", "to"} <= set(new.vocabulary())
    for i in range(50):
        scene = old.scene("train", i)
        assert old.caption(scene) == " and ".join(f"{article(o.phrase)} in the {o.cell}" for o in scene.objects)
    old_types = {ex.question_type for i in range(50) for ex in old.examples(old.scene("train", i), "train", i)}
    new_types = {ex.question_type for i in range(50) for ex in new.examples(new.scene("train", i), "train", i)}
    assert "relation" not in old_types and new_types - old_types == {"relation"}


def test_spatial_relations_name_one_direction_or_none():
    assert spatial_relation("top left", "bottom left") == "above"
    assert spatial_relation("bottom right", "top right") == "below"
    assert spatial_relation("top left", "top right") == "left of"
    assert spatial_relation("bottom right", "bottom left") == "right of"
    assert spatial_relation("top left", "bottom right") is None and spatial_relation("top left", "top left") is None


def test_render_puts_each_object_in_its_cell_with_its_tint(tiny_catalogs):
    gen = generator(tiny_catalogs)
    scene = next(s for s in (gen.scene("train", i) for i in range(100)) if any(o.colour for o in s.objects))
    rendered = gen.render(scene, "train")
    assert rendered.shape == (32, 32, 3) and rendered.dtype == np.uint8
    image = rendered.astype(int)
    occupied = {o.cell: o for o in scene.objects}
    for index, cell in enumerate(CELLS):
        row, col = divmod(index, 2)
        patch = image[row * 16 + 6 : row * 16 + 10, col * 16 + 6 : col * 16 + 10].mean((0, 1))
        if cell not in occupied:
            assert patch.max() < 80  # the dark background
        elif occupied[cell].colour:
            tint = np.array(COLOURS[occupied[cell].colour])
            assert np.corrcoef(patch, tint)[0, 1] > 0.9


def test_vocabulary_covers_every_text(tiny_catalogs):
    gen = generator(tiny_catalogs)
    vocabulary = set(gen.vocabulary())
    rng = random.Random(0)
    for i in range(100):
        split = rng.choice(["train", "test", "zero-shot"])
        for ex in gen.examples(gen.scene(split, i), split, i):
            assert set((ex.prompt + " " + ex.target).split()) <= vocabulary


def test_bad_configurations_are_refused(tiny_catalogs):
    with pytest.raises(ConfigError, match="few-shot names not in the catalog"):
        generator(tiny_catalogs, few_shot_names=("zebra",))
    with pytest.raises(ConfigError, match="held-out pairs must pair a tintable"):
        SceneGenerator(tiny_catalogs, SceneConfig(heldout_pairs=(("apple", "red"),)))
    with pytest.raises(ConfigError, match="held-out cells must pair an object"):
        generator(tiny_catalogs, heldout_cells=(("sneaker", "middle"),))
    with pytest.raises(ConfigError, match="leave a cell with no object"):
        names = ("sneaker", "bag", "coat", "apple", "flag of france")
        generator(tiny_catalogs, heldout_cells=tuple((n, "top left") for n in names))
    with pytest.raises(ConfigError, match="max_objects"):
        generator(tiny_catalogs, max_objects=5)
    with pytest.raises(ConfigError, match="unknown split"):
        generator(tiny_catalogs).scene("validation", 0)
    with pytest.raises(ConfigError, match="same object names"):
        SceneGenerator({"train": tiny_catalogs["train"], "test": tiny_catalogs["test"][:1]})
