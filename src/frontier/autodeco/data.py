"""`frontier autodeco make-data`: the base model's own correct solutions, by rejection sampling (paper §3.1).

For each generated problem the base samples a few answers at its default setting; those whose final answer checks
out are kept as {prompt, completion} training pairs. Every sample (kept or not) is appended to `<output>.partial`
as it is drawn, so an interrupted run resumes where it stopped; the output file is written atomically at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from frontier.autodeco.problems import Problem
from frontier.console import progress_steps
from frontier.errors import ConfigError
from frontier.io import atomic_write_text
from frontier.models.generation import chat_inputs
from frontier.models.sampling import eos_id_tensor, prefill, sample, static_params

MODEL_NAME_OR_PATH = object()  # make_data's default model_id: the model's own config.name_or_path


@dataclass
class MakeDataSummary:
    problems: int
    samples: int
    kept: int
    accuracy_by_family: dict[str, float] = field(default_factory=dict)


def _read_partial(path: Path, settings: dict, problems: list[Problem]) -> list[dict]:
    """Records of an interrupted run with the same settings; a last line cut mid-write is ignored. The first line
    holds the settings the records were drawn with: another run's samples must not be resumed into this one."""
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if not lines:
        return []
    stored = lines[0].get("settings") if isinstance(lines[0], dict) else None
    if stored is None:
        raise ConfigError(
            f"{path} holds samples of an interrupted run by an older frontier, which recorded no settings: delete it "
            "to start afresh"
        )
    changed = sorted(k for k in settings if stored.get(k) != settings[k])
    if changed:
        was = ", ".join(f"{k}={stored.get(k)!r}" for k in changed)
        now = ", ".join(f"{k}={settings[k]!r}" for k in changed)
        raise ConfigError(
            f"{path} holds samples of an interrupted run with other settings ({was}; now {now}): rerun with those "
            f"settings to resume it, or delete {path} to start afresh"
        )
    records = lines[1:]
    for record in records:
        index = record["problem_index"]
        if index >= len(problems) or record["prompt"] != problems[index].prompt:
            raise ConfigError(f"{path} holds samples of other problems (problem {index}); delete it to start afresh")
    return records


def make_data(
    model,
    tokenizer,
    problems: list[Problem],
    output: str | Path,
    samples_per_problem: int = 4,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
    model_id: str | object | None = MODEL_NAME_OR_PATH,
) -> MakeDataSummary:
    """Sample the base on `problems`, keep the distinct correct completions, write them as JSONL to `output`.

    `model_id` names the base in the resume record, so an interrupted run is not resumed with another base: by
    default the model's `config.name_or_path`; callers that know a steadier name pass it (the CLI: the resolved
    --model path, None for the embedded model, whose converted copy's path changes with the cache)."""
    if model_id is MODEL_NAME_OR_PATH:
        model_id = getattr(model.config, "name_or_path", None)
    if samples_per_problem < 1 or batch_size < 1:
        raise ConfigError("samples_per_problem and batch_size must be positive integers")
    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    settings = {
        "model": model_id, "samples_per_problem": samples_per_problem,
        "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "seed": seed, "problems": len(problems),
    }  # fmt: skip
    records = _read_partial(partial, settings, problems)
    # A problem counts as done only with all its samples; a batch cut short is drawn again.
    counts = Counter(r["problem_index"] for r in records)
    done = {i for i, n in counts.items() if n == samples_per_problem}
    records = [r for r in records if r["problem_index"] in done]
    partial.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(partial, "".join(json.dumps(r) + "\n" for r in [{"settings": settings}, *records]))
    problems_per_batch = max(1, batch_size // samples_per_problem)
    batches = [list(range(i, min(i + problems_per_batch, len(problems))))
               for i in range(0, len(problems), problems_per_batch)]  # fmt: skip
    with partial.open("a") as sink, progress_steps("sampling the base", len(batches), progress) as advance:
        for number, indices in enumerate(batches):
            todo = [i for i in indices if i not in done]
            if todo:
                # The seed depends on the batch number only, so a resumed run draws what the first run would have.
                generator = torch.Generator(device=model.device).manual_seed(seed * 1_000_003 + number)
                inputs = chat_inputs(tokenizer, [problems[i].prompt for i in todo])
                start = prefill(model, inputs["input_ids"], inputs["attention_mask"]).repeat(samples_per_problem)
                out = sample(model, start, static_params(temperature, top_p), max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id, generator=generator)  # fmt: skip
                texts = tokenizer.batch_decode(out.tokens, skip_special_tokens=True)
                ended = torch.isin(out.tokens, eos_id_tensor(model, tokenizer.eos_token_id, out.tokens.device)).any(-1)
                for row, text in enumerate(texts):
                    problem = problems[todo[row // samples_per_problem]]
                    record = {"problem_index": todo[row // samples_per_problem], "prompt": problem.prompt,
                              "completion": text.strip(), "answer": problem.answer, "family": problem.family,
                              "correct": problem.is_correct(text), "ended": bool(ended[row])}  # fmt: skip
                    records.append(record)
                    sink.write(json.dumps(record) + "\n")
                sink.flush()
            advance()
    kept, seen = [], set()
    for record in records:
        key = (record["problem_index"], record["completion"])
        # A sample cut off at max_new_tokens is not kept even when its last number is right: training appends EOS,
        # which would teach the heads to end where the base did not.
        if record["correct"] and record["ended"] and record["completion"] and key not in seen:
            seen.add(key)
            kept.append({k: record[k] for k in ("prompt", "completion", "answer", "family")})
    atomic_write_text(output, "".join(json.dumps(item) + "\n" for item in kept))
    partial.unlink()
    totals, correct = Counter(r["family"] for r in records), Counter(r["family"] for r in records if r["correct"])
    return MakeDataSummary(
        problems=len(problems), samples=len(records), kept=len(kept),
        accuracy_by_family={family: correct[family] / totals[family] for family in sorted(totals)},
    )  # fmt: skip
