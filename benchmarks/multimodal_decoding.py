"""Cached decoding of the unified multimodal model against recomputing the whole sequence per token.

    .venv/bin/python benchmarks/multimodal_decoding.py                     # width 128, softmax and kimi_linear
    .venv/bin/python benchmarks/multimodal_decoding.py --hidden-size 64 --batch 16

`generate` (captions, VQA answers) and `draw` (64 patch codes per image) read the fixed part and the prompt once and
then take one step per token over a `DecodingCache`. The baseline is what they did before: run `forward` (for
drawing, `code_logits`) over everything so far for every new token, the reference the tests compare them against.
Both run on the same randomly initialised model (speed does not depend on the weights; EOS is suppressed so every
row generates the same number of tokens), one after the other in this process; the JSON holds both times, their
ratio and whether the two gave the same tokens.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from frontier.io import atomic_write_json
from frontier.multimodal.configuration_unified import UnifiedMultimodalConfig
from frontier.multimodal.modeling_unified import UnifiedMultimodalForConditionalGeneration, right_pad

RESULTS = Path(__file__).resolve().parent.parent / "results"


@torch.no_grad()
def generate_by_recompute(model, pixel_values: torch.Tensor, prompts: list[list[int]], new_tokens: int) -> list:
    """Greedy tokens, running `forward` over image + text so far for every new token."""
    rows = [list(p) for p in prompts]
    for _ in range(new_tokens):
        ids, mask = right_pad(rows, model.config.pad_token_id)
        logits = model(pixel_values, ids, mask).logits
        last = torch.tensor([len(r) - 1 for r in rows])
        for row, token in zip(rows, logits[torch.arange(len(rows)), last].argmax(-1).tolist(), strict=True):
            row.append(token)
    return [row[len(p) :] for row, p in zip(rows, prompts, strict=True)]


@torch.no_grad()
def draw_by_recompute(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Greedy codes, running `code_logits` over the description and every code so far for every new code."""
    codes = torch.zeros(len(input_ids), 0, dtype=torch.long)
    for _ in range(model.config.num_patches):
        codes = torch.cat([codes, model.code_logits(input_ids, attention_mask, codes)[:, -1:].argmax(-1)], 1)
    return codes


def timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="images (generation) and descriptions (drawing)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per prompt (default: 16)")
    parser.add_argument("--output", type=Path, default=RESULTS / "multimodal_decoding.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    rows = []
    for backend in ("softmax", "kimi_linear"):
        config = UnifiedMultimodalConfig(
            vocab_size=256, hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size,
            num_hidden_layers=args.layers, attention_backend=backend, image_codebook_size=256,
        )  # fmt: skip
        model = UnifiedMultimodalForConditionalGeneration(config).eval()
        no_eos = F.one_hot(torch.tensor(config.eos_token_id), config.vocab_size) * -1e4
        model.lm_head.register_forward_hook(lambda module, inputs, out, no_eos=no_eos: out + no_eos)
        pixels = torch.randn(args.batch, 3, config.image_size, config.image_size)
        lengths = [4 + i % 9 for i in range(args.batch)]  # prompts of 4..12 tokens, as the VQA prompts
        prompts = [torch.randint(3, 256, (n,)).tolist() for n in lengths]
        texts, mask = right_pad(prompts, config.pad_token_id)
        cached_s, cached = timed(model.generate, pixels, prompts, args.new_tokens)
        recompute_s, recomputed = timed(generate_by_recompute, model, pixels, prompts, args.new_tokens)
        draw_cached_s, drawn = timed(model.draw, texts, mask)
        draw_recompute_s, redrawn = timed(draw_by_recompute, model, texts, mask)
        row = {
            "backend": backend,
            "generate": {"cached_s": cached_s, "recompute_s": recompute_s, "speedup": recompute_s / cached_s,
                         "same_tokens": cached == recomputed},
            "draw": {"cached_s": draw_cached_s, "recompute_s": draw_recompute_s,
                     "speedup": draw_recompute_s / draw_cached_s, "same_codes": bool(torch.equal(drawn, redrawn))},
        }  # fmt: skip
        rows.append(row)
        for task in ("generate", "draw"):
            r = row[task]
            print(f"{backend:12s} {task:8s} cached {r['cached_s']:.2f} s, recompute {r['recompute_s']:.2f} s: "
                  f"{r['speedup']:.1f}×", file=sys.stderr)  # fmt: skip
    result = {
        "settings": vars(args) | {"output": str(args.output)},
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, result)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
