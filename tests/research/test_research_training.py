"""Assistant-only masking with the real SmolLM2 chat template; training, LoRA and exact resume on a tiny Llama."""

import shutil
import sys

import pytest
import torch

from frontier.errors import BackendUnavailableError, ConfigError
from frontier.research.training import (
    TrainConfig,
    encode_text,
    encode_trajectory,
    mean_token_loss,
    read_step_log,
    train_causal_lm,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only add contention

ANSWER = "<think>The page says Oslo.</think>\n<answer>Oslo</answer>"
CALL = (
    '<think>I should search.</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "capital"}}\n</tool_call>'
)
MESSAGES = [
    {"role": "system", "content": "You are a deep research assistant."},
    {"role": "user", "content": "What is the capital of Norway?"},
    {"role": "assistant", "content": CALL},
    {"role": "user", "content": "<tool_response>\nNorway's capital is Oslo.\n</tool_response>"},
    {"role": "assistant", "content": ANSWER},
]


@pytest.fixture(scope="module")
def tokenizer():
    """Only SmolLM2's tokenizer, read from the embedded GGUF (much faster than loading the model too)."""
    from transformers import AutoTokenizer

    from frontier.models.loading import embedded_gguf_path

    gguf = embedded_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)


def labelled_runs(tokenizer, input_ids, labels):
    """The decoded text of each maximal run of labelled tokens."""
    runs, current = [], []
    for token, label in zip(input_ids.tolist(), labels.tolist(), strict=True):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


def test_only_assistant_turns_are_labelled(tokenizer):
    input_ids, labels = encode_trajectory(tokenizer, MESSAGES, max_length=4096)

    full = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert input_ids.tolist() == tokenizer(full, add_special_tokens=False).input_ids
    eos = tokenizer.eos_token
    assert labelled_runs(tokenizer, input_ids, labels) == [CALL + eos, ANSWER + eos]
    learned = tokenizer.decode(input_ids[labels != -100])
    assert "tool_response" not in learned and "Norway's capital" not in learned and "deep research" not in learned


def test_an_unsampled_end_of_turn_is_not_learned(tokenizer):
    """RL: a turn that a stop string or the token limit ended learns its text, not an end-of-turn it never wrote."""
    call_turn = next(i for i, m in enumerate(MESSAGES) if m["role"] == "assistant")
    input_ids, labels = encode_trajectory(tokenizer, MESSAGES, max_length=4096, unsampled_ends=[call_turn])
    assert labelled_runs(tokenizer, input_ids, labels) == [CALL, ANSWER + tokenizer.eos_token]
    with pytest.raises(ConfigError, match=r"unsampled_ends \[0\] are not indices of assistant turns"):
        encode_trajectory(tokenizer, MESSAGES, unsampled_ends=[0])


def test_trajectory_is_truncated_from_the_right(tokenizer):
    full_ids, full_labels = encode_trajectory(tokenizer, MESSAGES, max_length=4096)
    input_ids, labels = encode_trajectory(tokenizer, MESSAGES, max_length=40)

    assert torch.equal(input_ids, full_ids[:40]) and torch.equal(labels, full_labels[:40])
    with pytest.raises(ConfigError, match="max_length"):
        encode_trajectory(tokenizer, MESSAGES, max_length=10)  # ends inside the system prompt


def test_template_that_rewrites_earlier_turns_is_refused(tokenizer, monkeypatch):
    # Like Qwen3's template: reasoning is shown only in the last assistant turn.
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and not loop.last %}{{ m.content.split('</think>')[-1] }}"
        "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    monkeypatch.setattr(tokenizer, "chat_template", template)
    with pytest.raises(ConfigError, match="chat template"):
        encode_trajectory(tokenizer, MESSAGES, max_length=4096)


def test_trajectory_without_assistant_turn_is_refused(tokenizer):
    with pytest.raises(ConfigError, match="no assistant turn"):
        encode_trajectory(tokenizer, MESSAGES[:2], max_length=4096)


def test_text_learns_every_token(tokenizer):
    input_ids, labels = encode_text(tokenizer, "Oslo is the capital of Norway.", max_length=64)

    assert torch.equal(input_ids, labels)
    assert input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(input_ids[:-1]) == "Oslo is the capital of Norway."


def synthetic_examples(count=8, length=12):
    """Runs of consecutive token ids (a pattern a tiny model picks up in a few steps); the first half is the prompt."""
    examples = []
    for i in range(count):
        input_ids = (torch.arange(length + i % 3) + 11 * i) % 125 + 3
        labels = input_ids.clone()
        labels[: length // 2] = -100
        examples.append((input_ids, labels))
    return examples


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_loss_decreases(tiny_llama, tmp_path, lora):
    if lora:
        pytest.importorskip("peft")
    model = tiny_llama()
    base = [(parameter, parameter.detach().clone()) for parameter in model.parameters()]
    examples = synthetic_examples()
    before = mean_token_loss(model, examples)
    config = TrainConfig(steps=20, batch_size=4, lr=1e-2, checkpoint_every=10, warmup_steps=2, lora=lora, lora_rank=8)

    trained = train_causal_lm(model, examples, config, tmp_path, progress=False)

    assert mean_token_loss(trained, examples) < before - (0.25 if lora else 1.0)
    assert (tmp_path / "checkpoint-10").is_dir() and (tmp_path / "checkpoint-20").is_dir()
    log = read_step_log(tmp_path / "train_log.jsonl")
    assert [record["step"] for record in log] == list(range(1, 21))
    assert log[0]["loss"] == pytest.approx(before, rel=0.05)  # the first step's loss is that of the initial model
    assert sum(r["loss"] for r in log[-5:]) < sum(r["loss"] for r in log[:5])
    if lora:
        assert all(torch.equal(parameter, original) for parameter, original in base)
        assert (tmp_path / "final" / "adapter_model.safetensors").is_file()
        assert not (tmp_path / "final" / "model.safetensors").exists()
    else:
        assert (tmp_path / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_equals_uninterrupted_run(tiny_llama, tmp_path, lora):
    if lora:
        pytest.importorskip("peft")
    examples = synthetic_examples()
    config = TrainConfig(
        steps=4, batch_size=2, gradient_accumulation_steps=2, lr=1e-2, checkpoint_every=2, warmup_steps=1, lora=lora
    )
    uninterrupted = train_causal_lm(tiny_llama(), examples, config, tmp_path / "a", progress=False)
    # An interrupted run: only its first checkpoint was written (its log has steps 1-4: 3-4 must be redone).
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    shutil.copy(tmp_path / "a" / "train_log.jsonl", tmp_path / "b" / "train_log.jsonl")

    resumed = train_causal_lm(tiny_llama(), examples, config, tmp_path / "b", progress=False)

    expected, actual = uninterrupted.state_dict(), resumed.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert (tmp_path / "b" / "checkpoint-4").is_dir()
    timeless = [[{k: v for k, v in r.items() if k != "seconds"} for r in read_step_log(run / "train_log.jsonl")]
                for run in (tmp_path / "a", tmp_path / "b")]  # fmt: skip
    assert timeless[1] == timeless[0] and len(timeless[0]) == 4


def test_resume_with_different_settings_is_refused(tiny_llama, tmp_path):
    examples = synthetic_examples()
    train_causal_lm(tiny_llama(), examples, TrainConfig(steps=1, batch_size=2, lr=1e-3), tmp_path, progress=False)

    with pytest.raises(ConfigError, match="lr"):
        train_causal_lm(tiny_llama(), examples, TrainConfig(steps=2, batch_size=2, lr=1e-2), tmp_path, progress=False)


def test_resume_on_other_data_is_refused(tiny_llama, tmp_path):
    examples = synthetic_examples()
    config = TrainConfig(steps=1, batch_size=2, lr=1e-3)
    train_causal_lm(tiny_llama(), examples, config, tmp_path, progress=False)
    input_ids, labels = examples[0]
    relabelled = labels.clone()
    relabelled[-1] = -100  # one token fewer learned: what a changed trajectory encoding does
    changed = [(input_ids, relabelled), *examples[1:]]
    longer = TrainConfig(steps=2, batch_size=2, lr=1e-3)

    with pytest.raises(ConfigError, match="other training data"):
        train_causal_lm(tiny_llama(), changed, longer, tmp_path, progress=False)
    train_causal_lm(tiny_llama(), examples, longer, tmp_path, progress=False)  # the same data resumes
    assert (tmp_path / "checkpoint-2").is_dir()


def test_resume_of_a_checkpoint_without_recorded_data_is_refused(tiny_llama, tmp_path):
    import json

    examples = synthetic_examples()
    train_causal_lm(tiny_llama(), examples, TrainConfig(steps=1, batch_size=2, lr=1e-3), tmp_path, progress=False)
    state_path = tmp_path / "checkpoint-1" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    del state["data"]  # as written before checkpoints recorded their data
    state_path.write_text(json.dumps(state))

    with pytest.raises(ConfigError, match="before frontier recorded its training data"):
        train_causal_lm(tiny_llama(), examples, TrainConfig(steps=2, batch_size=2, lr=1e-3), tmp_path, progress=False)


@pytest.mark.parametrize(
    "settings",
    [
        {"steps": 0},
        {"batch_size": 0},
        {"checkpoint_every": -1},
        {"gradient_accumulation_steps": 0},
        {"lr": 0.0},
        {"warmup_steps": 10, "steps": 10},
        {"warmup_steps": -1},
        {"lora_rank": 0},
        {"lora_alpha": 0},
        {"lora_target_modules": ()},
    ],
)
def test_bad_config_values_raise(settings):
    with pytest.raises(ConfigError, match="TrainConfig"):
        TrainConfig(**settings)


def test_examples_without_labels_are_refused(tiny_llama, tmp_path):
    input_ids = torch.arange(3, 10)
    with pytest.raises(ConfigError, match="no labelled token"):
        train_causal_lm(tiny_llama(), [(input_ids, torch.full_like(input_ids, -100))], TrainConfig(), tmp_path)
    with pytest.raises(ConfigError, match="no training examples"):
        train_causal_lm(tiny_llama(), [], TrainConfig(), tmp_path)


def test_lora_without_peft_names_the_install(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` fail
    with pytest.raises(BackendUnavailableError, match="pip install"):
        train_causal_lm(tiny_llama(), synthetic_examples(), TrainConfig(steps=1, lora=True), tmp_path, progress=False)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_changes_memory_not_results(tiny_llama, tmp_path, lora):
    examples = synthetic_examples()
    results = []
    for checkpointing in (False, True):
        config = TrainConfig(steps=2, batch_size=4, lr=1e-2, lora=lora, gradient_checkpointing=checkpointing)
        results.append(train_causal_lm(tiny_llama(), examples, config, tmp_path / str(checkpointing), progress=False))

    enabled = [any(getattr(m, "gradient_checkpointing", False) is True for m in r.modules()) for r in results]
    assert enabled == [False, True]
    plain, recomputed = (model.state_dict() for model in results)
    assert all(torch.allclose(plain[name], recomputed[name], atol=1e-6) for name in plain)
