"""Prompt caching on an agent-shaped conversation: each turn resends the whole conversation plus a tool response.

    .venv/bin/python benchmarks/prompt_cache.py                  # SmolLM2, 6 turns, results/prompt_cache.{json,png}
    .venv/bin/python benchmarks/prompt_cache.py --turns 10 --tool-tokens 600

The research agent (and any chat client of `frontier serve`) sends the full history every turn. Without a kept KV
cache the model reads the whole history again each time, so a conversation costs O(turns²) prefill; with
`Engine(prompt_cache_size > 0)` each turn reads only what is new. Both runs use greedy decoding on the same
conversation (the tool responses are Factbook passages), one after the other in this process, and must produce the
same replies; the figure is the ratio of their wall times.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from frontier.io import atomic_write_json
from frontier.models import load_causal_lm
from frontier.reproduce.plots import line_chart
from frontier.research.corpus import chunk_document, factbook_documents
from frontier.serving.engine import Engine, Job

RESULTS = Path(__file__).resolve().parent.parent / "results"
QUESTION = "Which countries border the country whose capital is Ulaanbaatar, and what are their capitals?"
COUNTRIES = ("Mongolia", "Russia", "China", "Kazakhstan", "India", "Japan", "South Korea", "Vietnam", "Nepal")


def tool_responses(tokenizer, count: int, tokens: int) -> list[str]:
    """`count` texts of about `tokens` tokens each: the leading passages of one Factbook country per turn."""
    by_title = {doc.title: doc for doc in factbook_documents()}
    texts = []
    for country in (COUNTRIES * count)[:count]:
        passages = [p.text for p in chunk_document(by_title[country])]
        ids = tokenizer("\n".join(passages), add_special_tokens=False)["input_ids"][:tokens]
        texts.append("<tool_response>\n" + tokenizer.decode(ids) + "\n</tool_response>")
    return texts


def converse(engine: Engine, responses: list[str], max_tokens: int) -> list[dict]:
    """Run the conversation; one record per turn (prompt tokens, cached tokens, seconds, reply)."""
    messages = [{"role": "user", "content": QUESTION}]
    turns = []
    for response in [*responses, None]:
        prompt = engine.encode_chat(messages)
        started = time.perf_counter()
        (choice,) = engine.run(Job([prompt], max_tokens=max_tokens, temperature=0))
        seconds = time.perf_counter() - started
        turns.append(dict(prompt_tokens=len(prompt), cached_tokens=choice.cached_prompt_tokens, seconds=seconds,
                          completion_tokens=len(choice.tokens), reply=choice.text))  # fmt: skip
        print(f"  turn {len(turns)}: {len(prompt)} prompt tokens ({choice.cached_prompt_tokens} cached), "
              f"{seconds:.1f} s", file=sys.stderr)  # fmt: skip
        if response is not None:
            messages += [{"role": "assistant", "content": choice.text}, {"role": "user", "content": response}]
    return turns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=6, help="model turns (default: 6)")
    parser.add_argument("--tool-tokens", type=int, default=400, help="tokens of each tool response (default: 400)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per turn (default: 32)")
    parser.add_argument("--output", type=Path, default=RESULTS / "prompt_cache.json")
    args = parser.parse_args()
    if args.turns < 2 or args.tool_tokens < 1 or args.max_tokens < 1:
        parser.error("--turns must be ≥ 2 and --tool-tokens, --max-tokens ≥ 1")

    model, tokenizer = load_causal_lm()
    responses = tool_responses(tokenizer, args.turns - 1, args.tool_tokens)
    runs = {}
    for name, size in (("no prompt cache", 0), ("prompt cache", 2)):
        print(f"{name}:", file=sys.stderr)
        runs[name] = converse(Engine(model, tokenizer, prompt_cache_size=size), responses, args.max_tokens)
    plain, cached = runs["no prompt cache"], runs["prompt cache"]
    seconds = {name: sum(t["seconds"] for t in turns) for name, turns in runs.items()}
    read = {name: sum(t["prompt_tokens"] - t["cached_tokens"] for t in turns) for name, turns in runs.items()}
    result = {
        "settings": vars(args) | {"output": str(args.output), "model": "SmolLM2-135M-Instruct (embedded)"},
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "same_replies": [t["reply"] for t in plain] == [t["reply"] for t in cached],
        "tokens_read": read,
        "seconds": seconds,
        "speedup": seconds["no prompt cache"] / seconds["prompt cache"],
        "turns": runs,
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, result)
    figure = line_chart(
        args.output.with_suffix(".png"),
        {"seconds per turn": {name: ([t["prompt_tokens"] for t in turns], [t["seconds"] for t in turns])
                              for name, turns in runs.items()}},
        xlabel="prompt tokens (the whole conversation so far)", ylabel="seconds",
        title=f"SmolLM2-135M, greedy {args.max_tokens} tokens per turn: {result['speedup']:.2f}× faster with the cache",
    )  # fmt: skip
    print(f"same replies: {result['same_replies']}; tokens read {result['tokens_read']}; "
          f"{seconds['no prompt cache']:.1f} s vs {seconds['prompt cache']:.1f} s = {result['speedup']:.2f}×; "
          f"wrote {args.output} and {figure}", file=sys.stderr)  # fmt: skip
    return 0 if result["same_replies"] else 1


if __name__ == "__main__":
    sys.exit(main())
