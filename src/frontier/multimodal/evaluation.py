"""Scoring the unified model on a split of generated scenes: VQA, captioning and retrieval.

- VQA: exact match of the generated answer, overall and per question type.
- Captions: exact match, token F1 (bag of words, as SQuAD) and a CIDEr-style score: per n = 1..4 the cosine
  between TF-IDF n-gram vectors of candidate and reference (IDF over the split's references), averaged, × 10.
- Retrieval: Recall@1 / @5 image → text and text → image, the split's scenes as the gallery; a scene whose caption
  equals the query's counts as a hit too (two scenes can show the same thing).

Each outcome is also kept per item (question, scene), so two models scored on the same scenes are compared item by
item (`compare`): the paired interval of their difference, far narrower than two separate intervals.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from frontier.console import progress_steps
from frontier.errors import ConfigError
from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration
from frontier.multimodal.processing import encode_words, pixel_values, text_batch
from frontier.multimodal.scenes import QUESTION_TYPES, READING_TASKS, SceneGenerator
from frontier.stats import paired_difference

# "A ≥ B" between two models holds when A's mean is at least B's and the paired 95% interval of A − B rules out a
# loss larger than this (1 point of accuracy or Recall@1, 0.01 of token F1): the point estimate's sign plus a
# non-inferiority test.
MARGIN = 0.01
# task → (its per-item outcome in evaluate()'s "items", its name, the factor that prints it: 100 for percentages)
COMPARED = {
    "vqa": ("vqa_correct", "VQA accuracy", 100),
    "caption": ("caption_token_f1", "caption token F1", 1),
    "retrieval": ("retrieval_r1", "retrieval Recall@1, mean of both directions", 100),
}


def token_f1(candidate: str, reference: str) -> float:
    cand, ref = Counter(candidate.split()), Counter(reference.split())
    overlap = sum((cand & ref).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(cand.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _tfidf(grams: Counter, idf: dict, unseen_idf: float) -> dict:
    total = sum(grams.values()) or 1
    return {g: c / total * idf.get(g, unseen_idf) for g, c in grams.items()}


# Bumped when the same weights would score differently, so stored scores are recomputed: 2 = generation runs to EOS
# or the text window (version 1 cut every answer and caption at 24 new tokens); 3 = VQA is also scored on the
# questions about a scene's held-out object alone.
EVALUATION_VERSION = 3


def mentions(text: str, name: str) -> bool:
    """Whether `text` names the object `name` as whole words ("shirt" is not in "a t-shirt")."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def cider_scores(candidates: Sequence[str], references: Sequence[str], max_n: int = 4) -> list[float]:
    """CIDEr-style score of each candidate against its one reference (see the module docstring)."""
    refs = [r.split() for r in references]
    scores = [0.0] * len(candidates)
    unseen_idf = math.log(len(refs))  # an n-gram in no reference is as rare as can be
    for n in range(1, max_n + 1):
        ref_grams = [_ngrams(r, n) for r in refs]
        document_frequency = Counter(g for grams in ref_grams for g in grams)
        idf = {g: math.log(len(refs) / df) for g, df in document_frequency.items()}
        for i, candidate in enumerate(candidates):
            a = _tfidf(_ngrams(candidate.split(), n), idf, unseen_idf)
            b = _tfidf(ref_grams[i], idf, unseen_idf)
            norm = math.sqrt(sum(x * x for x in a.values())) * math.sqrt(sum(x * x for x in b.values()))
            scores[i] += (sum(a[g] * b.get(g, 0.0) for g in a) / norm if norm else 0.0) / max_n
    return [10 * s for s in scores]


def hits_at(similarity: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, whether its top-k columns hold a relevant one; similarity and relevant are [Q, G], result [Q]."""
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    return relevant.gather(1, top).any(1)


@torch.no_grad()
def evaluate(
    model: UnifiedMultimodalForConditionalGeneration,
    tokenizer,
    generator: SceneGenerator,
    split: str,
    count: int,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    progress: bool = False,
    tasks: Sequence[str] = READING_TASKS,
) -> dict:
    """Metrics of `tasks` on scenes 0..count-1 of `split`, as a JSON-able dict (see the module docstring)."""
    model.eval()
    device = next(model.parameters()).device
    size = generator.config.image_size
    vqa_hits: dict[str, list[bool]] = {t: [] for t in QUESTION_TYPES}
    vqa_items: list[tuple[int, bool]] = []  # (scene index, answered right) per question, in order
    vqa_novel: list[bool] = []  # per question: does it name the object that makes its scene held out?
    captions, references, image_embeds, text_embeds = [], [], [], []
    scenes_read = hashlib.sha256()  # what was asked and expected: two metrics pair item by item only if it matches
    caption_prompt = [tokenizer.bos_token_id, *encode_words(tokenizer, "caption :")]
    batches = range(0, count, batch_size)
    with progress_steps(f"evaluating on {split} scenes", total=len(batches), enabled=progress) as advance:
        for start in batches:
            indices = range(start, min(count, start + batch_size))
            scenes = [generator.scene(split, i) for i in indices]
            examples = [generator.examples(s, split, i) for s, i in zip(scenes, indices, strict=True)]
            pixels = pixel_values([generator.render(s, split) for s in scenes], size).to(device)
            references += [ex[0].target for ex in examples]
            for scene, example_set in zip(scenes, examples, strict=True):
                scenes_read.update(repr(scene).encode())  # objects, images, places, tints
                for ex in example_set:
                    scenes_read.update(f"{ex.task}\x1f{ex.prompt}\x1f{ex.target}\x1e".encode())
            if "caption" in tasks:
                generated = model.generate(pixels, [caption_prompt] * len(scenes), max_new_tokens)
                captions += [tokenizer.decode(ids) for ids in generated]
            if "vqa" in tasks:
                questions = [(row, q) for row, ex in enumerate(examples) for q in ex if q.task == "vqa"]
                prompts = [[tokenizer.bos_token_id, *encode_words(tokenizer, q.prompt)] for _, q in questions]
                answers = model.generate(pixels[[row for row, _ in questions]], prompts, max_new_tokens)
                novel = [generator.novel_names(scene, split) for scene in scenes]
                for (row, q), ids in zip(questions, answers, strict=True):
                    hit = tokenizer.decode(ids) == q.target
                    vqa_hits[q.question_type].append(hit)
                    vqa_items.append((indices[row], hit))
                    vqa_novel.append(any(mentions(f"{q.prompt} {q.target}", name) for name in novel[row]))
            if "retrieval" in tasks:
                image_embeds.append(model.encode_image(pixels))
                texts = {k: v.to(device) for k, v in text_batch(tokenizer, references[-len(scenes) :]).items()}
                text_embeds.append(model.encode_text(**texts))
            advance()
    # Per-item outcomes, in a fixed order: two models scored on the same split and count can be compared item by item.
    metrics: dict = {
        "split": split, "scenes": count, "fingerprint": scenes_read.hexdigest()[:16], "evaluation": EVALUATION_VERSION,
        "items": {},
    }  # fmt: skip
    if "vqa" in tasks:
        metrics["items"].update(vqa_scene=[i for i, _ in vqa_items], vqa_correct=[int(h) for _, h in vqa_items],
                                vqa_novel=[int(n) for n in vqa_novel])  # fmt: skip
        all_hits = [hit for hits in vqa_hits.values() for hit in hits]
        metrics.update(
            vqa_accuracy=sum(all_hits) / len(all_hits),
            vqa_correct=sum(all_hits),
            vqa_questions=len(all_hits),
            vqa_novel_correct=sum(h for (_, h), n in zip(vqa_items, vqa_novel, strict=True) if n),
            vqa_novel_questions=sum(vqa_novel),
            vqa_accuracy_by_type={t: sum(h) / len(h) for t, h in vqa_hits.items() if h},
            vqa_questions_by_type={t: len(h) for t, h in vqa_hits.items() if h},
        )
    if "caption" in tasks:
        pairs = list(zip(captions, references, strict=True))
        f1 = [token_f1(c, r) for c, r in pairs]
        metrics["items"]["caption_token_f1"] = f1
        metrics.update(
            caption_exact_match=sum(c == r for c, r in pairs) / count,
            caption_token_f1=sum(f1) / count,
            caption_cider=sum(cider_scores(captions, references)) / count,
            samples=[{"caption": c, "reference": r} for c, r in pairs[:5]],
        )
    if "retrieval" in tasks:
        similarity = torch.cat(image_embeds) @ torch.cat(text_embeds).T  # [images, texts]
        same_caption = torch.tensor([[a == b for b in references] for a in references], device=similarity.device)
        first_hits = []
        for direction, sim, relevant in (("image_to_text", similarity, same_caption),
                                         ("text_to_image", similarity.T, same_caption.T)):  # fmt: skip
            for k in (1, 5):
                hits = hits_at(sim, relevant, k).float()
                metrics[f"retrieval_{direction}_r{k}"] = hits.mean().item()
                if k == 1:
                    first_hits.append(hits)
        # Scene i is query i in both directions: its item is the mean of its two Recall@1 hits.
        metrics["items"]["retrieval_r1"] = ((first_hits[0] + first_hits[1]) / 2).tolist()
    return metrics


def task_figure(metrics: dict, task: str) -> float:
    """The reported figure of `task` ("vqa", "caption", "retrieval") in `evaluate()`'s metrics."""
    if task == "retrieval":
        return (metrics["retrieval_image_to_text_r1"] + metrics["retrieval_text_to_image_r1"]) / 2
    return metrics["vqa_accuracy" if task == "vqa" else "caption_token_f1"]


@dataclass(frozen=True)
class Comparison:
    """Model A − model B on one task, paired over the same items, with its 95% interval."""

    task: str
    mean: float
    low: float
    high: float
    items: int

    @property
    def holds(self) -> bool:
        """Whether "A ≥ B": A's mean is at least B's and the interval rules out a loss beyond `MARGIN`."""
        return self.mean >= 0 and self.low > -MARGIN

    @property
    def reading(self) -> str:
        if math.isnan(self.low):
            return "too few items for an interval"
        if self.low > 0:
            return "better"
        if self.low > -MARGIN:
            return "no loss beyond the margin" if self.mean >= 0 else "slightly behind"
        return "behind" if self.high < 0 else "interval too wide to rule out a loss"

    def __str__(self) -> str:
        scale = COMPARED[self.task][2]
        fmt = ".1f" if scale == 100 else ".3f"
        bounds = f"[{scale * self.low:+{fmt}}, {scale * self.high:+{fmt}}]"
        unit = "questions" if self.task == "vqa" else "scenes"
        return f"difference {scale * self.mean:+{fmt}} {bounds} ({self.reading}; paired over {self.items} {unit})"


def compare(ours: dict, theirs: dict, task: str) -> Comparison:
    """`ours` − `theirs` on `task`, item by item; both are `evaluate()` metrics of the same split and scenes."""
    if task not in COMPARED:
        raise ConfigError(f"unknown task {task!r}; compare one of {', '.join(COMPARED)}")
    key = COMPARED[task][0]
    for name, metrics in (("first", ours), ("second", theirs)):
        if key not in metrics.get("items", {}):
            raise ConfigError(f"the {name} metrics hold no per-item {task} outcomes: evaluate that model on {task} "
                              "with this version of `frontier multimodal eval`")  # fmt: skip
        if "fingerprint" not in metrics:
            raise ConfigError(f"the {name} metrics were written before `frontier multimodal eval` recorded which "
                              "scenes it asked about: evaluate that model again")  # fmt: skip
    versions = ours.get("evaluation", 1), theirs.get("evaluation", 1)
    if versions[0] != versions[1]:
        raise ConfigError(
            f"the two metrics files come from different evaluations (versions {versions[0]} and {versions[1]}; "
            "version 1 cut answers at 24 tokens): evaluate both with this version of `frontier multimodal eval`"
        )
    a, b = ours["items"][key], theirs["items"][key]
    clusters = ours["items"]["vqa_scene"] if task == "vqa" else None
    same_items = (ours["split"], ours["scenes"], ours["fingerprint"]) == (
        theirs["split"],
        theirs["scenes"],
        theirs["fingerprint"],
    )
    if not same_items or (task == "vqa" and clusters != theirs["items"]["vqa_scene"]):
        raise ConfigError("the two models were scored on different scenes or questions: evaluate both on the same "
                          "split with the same --scenes, each trained with the same scene pool (--seed)")  # fmt: skip
    mean, low, high = paired_difference(a, b, clusters)
    units = len(set(clusters)) if clusters is not None else len(a)
    if units > 1 and not high - low > 1e-9:
        # Every item differs alike (e.g. none differ): the t-interval has no width. Zero disagreements among n
        # independent units bound the rate of disagreeing at 3/n (95%, the rule of three), so widen it by that.
        low, high = mean - 3 / units, mean + 3 / units
    return Comparison(task, mean, low, high, items=len(a))


def figure_text(metrics: dict, task: str) -> str:
    """`task_figure` as printed: a percentage for VQA and retrieval, three decimals for token F1."""
    value = task_figure(metrics, task)
    return f"{100 * value:.1f}%" if COMPARED[task][2] == 100 else f"{value:.3f}"


def format_metrics(metrics: dict) -> str:
    """One indented line per evaluated task: VQA, captions, retrieval."""
    lines = []
    if "vqa_accuracy" in metrics:
        by_type = ", ".join(f"{t} {100 * v:.1f}%" for t, v in metrics["vqa_accuracy_by_type"].items())
        lines.append(f"  VQA accuracy {100 * metrics['vqa_accuracy']:.1f}% ({by_type})")
    if "caption_token_f1" in metrics:
        lines.append(f"  captions: exact match {100 * metrics['caption_exact_match']:.1f}%, token F1 "
                     f"{metrics['caption_token_f1']:.3f}, CIDEr-style {metrics['caption_cider']:.2f}")  # fmt: skip
    if "retrieval_image_to_text_r1" in metrics:
        recalls = ", ".join(
            f"{label} R@{k} {100 * metrics[f'retrieval_{direction}_r{k}']:.1f}%"
            for direction, label in (("image_to_text", "image→text"), ("text_to_image", "text→image"))
            for k in (1, 5)
        )
        lines.append(f"  retrieval: {recalls}")
    return "\n".join(lines)
