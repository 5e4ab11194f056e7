"""`research-training` end to end in about a minute: a 2-layer random Llama with SmolLM2's own tokenizer stands in
for the embedded model, so every stage (mid-training, SFT, RL, the evaluation of each stage) runs on the real
questions, tools and trajectories. This checks the wiring; the agent's accuracy needs the real model (`frontier
reproduce --only research-training`)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from frontier.models import loading
from frontier.reproduce import Mode, RunContext, Verdict
from frontier.reproduce.experiments import research_training
from frontier.research.training import FINAL_NAME


@pytest.fixture
def tiny_embedded_model(tmp_path, monkeypatch):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = loading.embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    folder = tmp_path / "tiny-smollm2"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    monkeypatch.setattr(loading, "embedded_gguf_path", lambda: folder)
    return folder


def test_every_stage_trains_and_is_evaluated_on_both_held_out_sets(tiny_embedded_model, tmp_path, monkeypatch):
    tiny = replace(research_training.QUICK, train_questions=8, synthesized_questions=20, midtrain_steps=2, sft_steps=2,
                   agent_llm_calls=2, agent_tokens_per_turn=16, eval_questions=1, loss_questions=1,
                   agent_samples=2)  # fmt: skip
    monkeypatch.setattr(research_training, "QUICK", tiny)
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path / "run", progress=False)
    # A correct run stored by an earlier, interrupted run: it is kept and trained on, and only new runs are sampled.
    work = ctx.out_dir / "research-training"
    work.mkdir(parents=True)
    earlier = {"id": "earlier", "rollout": 0, "exact_match": True, "source": "agent", "unsampled_ends": [2],
               "messages": [{"role": "system", "content": "You are a deep research assistant."},
                            {"role": "user", "content": "What is the capital of Norway?"},
                            {"role": "assistant", "content": "<answer>Oslo</answer>"}]}  # fmt: skip
    (work / "agent-samples.jsonl").write_text(json.dumps(earlier) + "\n")
    result = research_training.agentic_training(ctx)

    stages = ["base agent", "+mid-training", "+mid-training+SFT", "+mid-training+SFT+RL"]
    for held_out in (research_training.SHIPPED, research_training.SYNTHESIZED):
        assert list(result.metrics["accuracy"][held_out]) == [stages[0], "closed-book", "rag", *stages[1:]]
    for stage in ("mid", "sft", "rl"):
        assert (work / stage / FINAL_NAME / "adapter_config.json").is_file(), stage  # LoRA on the previous stage
    loss = result.metrics["heldout_loss"]
    assert loss["trajectories"] == 1 and math.isfinite(loss["before_sft"]) and math.isfinite(loss["after_sft"])
    assert len(result.metrics["rl_log"]) == tiny.rl_steps
    data = result.metrics["data"]
    assert data["sft_trajectories"] > 0 and data["midtraining_texts"] > 0
    sampled = data["agent_sampled"]  # a random model answers nothing right: every new run is rejected
    assert sampled == {"runs": 2, "kept": 1, "kept_in_sft": 1}
    assert len((work / "agent-samples.rejected.jsonl").read_text().splitlines()) == 2
    verdicts = {row.claim.split(" (")[0]: row.verdict for row in result.rows}
    assert verdicts["On-policy RL: mean rollout reward per step"] is Verdict.NOT_COMPARABLE
    assert all(v in (Verdict.PASS, Verdict.FAIL, Verdict.NOT_COMPARABLE) for v in verdicts.values())
    assert (ctx.out_dir / result.figures[0]).stat().st_size > 1000
