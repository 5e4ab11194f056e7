"""Scoring the unified model on a split of generated scenes: VQA, captioning and retrieval.

- VQA: exact match of the generated answer, overall and per question type.
- Captions: exact match, token F1 (bag of words, as SQuAD) and a CIDEr-style score: per n = 1..4 the cosine
  between TF-IDF n-gram vectors of candidate and reference (IDF over the split's references), averaged, × 10.
- Retrieval: Recall@1 / @5 image → text and text → image, the split's scenes as the gallery; a scene whose caption
  equals the query's counts as a hit too (two scenes can show the same thing).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from frontier.console import progress_steps
from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration
from frontier.multimodal.processing import encode_words, pixel_values, text_batch
from frontier.multimodal.scenes import QUESTION_TYPES, READING_TASKS, SceneGenerator


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


def recall_at(similarity: torch.Tensor, relevant: torch.Tensor, k: int) -> float:
    """Share of rows whose top-k columns hold a relevant one; similarity and relevant are [Q, G]."""
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    return relevant.gather(1, top).any(1).float().mean().item()


@torch.no_grad()
def evaluate(
    model: UnifiedMultimodalForConditionalGeneration,
    tokenizer,
    generator: SceneGenerator,
    split: str,
    count: int,
    batch_size: int = 64,
    max_new_tokens: int = 24,
    progress: bool = False,
    tasks: Sequence[str] = READING_TASKS,
) -> dict:
    """Metrics of `tasks` on scenes 0..count-1 of `split`, as a JSON-able dict (see the module docstring)."""
    model.eval()
    device = next(model.parameters()).device
    size = generator.config.image_size
    vqa_hits: dict[str, list[bool]] = {t: [] for t in QUESTION_TYPES}
    captions, references, image_embeds, text_embeds = [], [], [], []
    caption_prompt = [tokenizer.bos_token_id, *encode_words(tokenizer, "caption :")]
    batches = range(0, count, batch_size)
    with progress_steps(f"evaluating on {split} scenes", total=len(batches), enabled=progress) as advance:
        for start in batches:
            indices = range(start, min(count, start + batch_size))
            scenes = [generator.scene(split, i) for i in indices]
            examples = [generator.examples(s, split, i) for s, i in zip(scenes, indices, strict=True)]
            pixels = pixel_values([generator.render(s, split) for s in scenes], size).to(device)
            references += [ex[0].target for ex in examples]
            if "caption" in tasks:
                generated = model.generate(pixels, [caption_prompt] * len(scenes), max_new_tokens)
                captions += [tokenizer.decode(ids) for ids in generated]
            if "vqa" in tasks:
                questions = [(row, q) for row, ex in enumerate(examples) for q in ex if q.task == "vqa"]
                prompts = [[tokenizer.bos_token_id, *encode_words(tokenizer, q.prompt)] for _, q in questions]
                answers = model.generate(pixels[[row for row, _ in questions]], prompts, max_new_tokens)
                for (_, q), ids in zip(questions, answers, strict=True):
                    vqa_hits[q.question_type].append(tokenizer.decode(ids) == q.target)
            if "retrieval" in tasks:
                image_embeds.append(model.encode_image(pixels))
                texts = {k: v.to(device) for k, v in text_batch(tokenizer, references[-len(scenes) :]).items()}
                text_embeds.append(model.encode_text(**texts))
            advance()
    metrics: dict = {"split": split, "scenes": count}
    if "vqa" in tasks:
        all_hits = [hit for hits in vqa_hits.values() for hit in hits]
        metrics.update(
            vqa_accuracy=sum(all_hits) / len(all_hits),
            vqa_correct=sum(all_hits),
            vqa_questions=len(all_hits),
            vqa_accuracy_by_type={t: sum(h) / len(h) for t, h in vqa_hits.items() if h},
            vqa_questions_by_type={t: len(h) for t, h in vqa_hits.items() if h},
        )
    if "caption" in tasks:
        pairs = list(zip(captions, references, strict=True))
        metrics.update(
            caption_exact_match=sum(c == r for c, r in pairs) / count,
            caption_token_f1=sum(token_f1(c, r) for c, r in pairs) / count,
            caption_cider=sum(cider_scores(captions, references)) / count,
            samples=[{"caption": c, "reference": r} for c, r in pairs[:5]],
        )
    if "retrieval" in tasks:
        similarity = torch.cat(image_embeds) @ torch.cat(text_embeds).T  # [images, texts]
        same_caption = torch.tensor([[a == b for b in references] for a in references], device=similarity.device)
        for direction, sim, relevant in (("image_to_text", similarity, same_caption),
                                         ("text_to_image", similarity.T, same_caption.T)):  # fmt: skip
            for k in (1, 5):
                metrics[f"retrieval_{direction}_r{k}"] = recall_at(sim, relevant, k)
    return metrics


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
