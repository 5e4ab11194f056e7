"""`frontier research train` on a tiny Llama: LoRA SFT and full mid-training through the CLI, loading the results
(a LoRA adapter is merged into its base), resuming, and one-line errors for bad input."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import LlamaForCausalLM

from frontier.cli import main
from frontier.errors import ModelLoadError
from frontier.models.loading import load_causal_lm

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only add contention

CALL = '<think>Search.</think>\n<tool_call>\n{"name": "search", "arguments": {"query": "capital"}}\n</tool_call>'


def trajectory(question: str, answer: str) -> dict:
    messages = [
        {"role": "system", "content": "You are a deep research assistant."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": CALL},
        {"role": "user", "content": f"<tool_response>\nThe answer is {answer}.\n</tool_response>"},
        {"role": "assistant", "content": f"<think>Found it.</think>\n<answer>{answer}</answer>"},
    ]
    return {"id": answer, "question": question, "answer": answer, "source": "fas-path", "messages": messages}


RECORDS = [
    trajectory("What is the capital of Norway?", "Oslo"),
    trajectory("What is the capital of Peru?", "Lima"),
    trajectory("What is the capital of Chad?", "N'Djamena"),
]
TEXTS = [
    {"text": "<think>Plan: find the border countries of Chad, then their capitals.</think>", "source": "fas-planning"},
    {"text": "Chad borders Libya, Sudan and Niger. The capital of Niger is Niamey.", "source": "fas-reasoning"},
    {"text": "<answer>Niamey</answer>", "source": "fas-reasoning"},
]


@pytest.fixture
def base(tmp_path, tiny_llama, char_tokenizer):
    """A saved tiny Llama with tied embeddings (as SmolLM2's) and the character tokenizer."""
    config = tiny_llama().config
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    tokenizer = char_tokenizer
    assert len(tokenizer) <= config.vocab_size
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def sft_data(tmp_path):
    return write_jsonl(tmp_path / "sft.jsonl", RECORDS)


@pytest.fixture
def mid_data(tmp_path):
    return write_jsonl(tmp_path / "mid.jsonl", TEXTS)


def train(*args) -> int:
    return main(["research", "train", "--grad-accum", "2", "--checkpoint-every", "1", *map(str, args)])


def logits(model, tokenizer):
    ids = tokenizer.apply_chat_template(RECORDS[0]["messages"], tokenize=False)
    input_ids = torch.tensor([tokenizer(ids, add_special_tokens=False).input_ids])
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_sft_lora_final_loads_merged_into_its_base(base, sft_data, tmp_path, capsys, char_tokenizer):
    from peft import PeftModel

    output = tmp_path / "run"
    assert (
        train("--stage", "sft", "--data", sft_data, "--base", base, "--output", output, "--steps", 2, "--lr", 1e-2) == 0
    )
    err = capsys.readouterr().err
    final = output / "final"
    assert "3 of 3 records" in err and str(final) in err
    adapter_config = json.loads((final / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base.resolve())
    assert not (final / "model.safetensors").exists()

    merged, tokenizer = load_causal_lm(final, progress=False)
    assert isinstance(merged, LlamaForCausalLM)
    assert not any("lora" in name for name in merged.state_dict())
    assert tokenizer.chat_template == char_tokenizer.chat_template
    base_model, _ = load_causal_lm(base, progress=False)
    base_logits = logits(base_model, tokenizer)
    peft_model = PeftModel.from_pretrained(base_model, final).eval()
    expected = logits(peft_model, tokenizer)
    torch.testing.assert_close(logits(merged, tokenizer), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected, base_logits)  # the adapter learned something


def test_research_ask_runs_the_agent_on_a_trained_adapter(base, sft_data, tmp_path, capsys):
    output = tmp_path / "run"
    assert train("--stage", "sft", "--data", sft_data, "--base", base, "--output", output, "--steps", 2,
                 "--lr", 1e-2) == 0  # fmt: skip
    capsys.readouterr()

    def ask(model) -> dict:
        code = main(["research", "ask", "What is the capital of Norway?", "--llm", f"local:{model}",
                     "--max-llm-calls", "2", "--max-tokens-per-turn", "8", "--no-python", "--extractor", "lines",
                     "--json", "--seed", "0"])  # fmt: skip
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads(captured.out)

    tuned, untuned = ask(output / "final"), ask(base)
    assert tuned["model"] == "final" and tuned["llm_calls"] == 2 and tuned["error"] is None
    replies = [
        [step["content"] for step in result["steps"] if step["kind"] == "assistant"] for result in (tuned, untuned)
    ]
    assert replies[0] != replies[1]  # the same seed samples differently: the adapter was merged in


def test_midtrain_full_final_is_a_whole_model(base, mid_data, tmp_path, capsys):
    output = tmp_path / "run"
    args = ("--stage", "midtrain", "--data", mid_data, "--base", base, "--output", output, "--full", "--lr", 1e-2)
    assert train(*args, "--steps", 2) == 0
    final = output / "final"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in final.iterdir()}
    assert not (final / "adapter_config.json").exists()
    assert "full model" in capsys.readouterr().err

    trained, tokenizer = load_causal_lm(final, progress=False)
    base_model, _ = load_causal_lm(base, progress=False)
    assert trained.config.tie_word_embeddings
    assert trained.lm_head.weight.data_ptr() == trained.model.embed_tokens.weight.data_ptr()
    assert not torch.allclose(trained.model.embed_tokens.weight, base_model.model.embed_tokens.weight)
    assert not torch.allclose(logits(trained, tokenizer), logits(base_model, tokenizer))


def test_sft_on_top_of_a_midtrained_adapter(base, mid_data, sft_data, tmp_path):
    """Mid-training's LoRA final folder as --base: it is merged for training, and loading the SFT result merges both."""
    from peft import PeftModel

    mid, sft = tmp_path / "mid", tmp_path / "sft"
    assert train("--stage", "midtrain", "--data", mid_data, "--base", base, "--output", mid, "--steps", 1) == 0
    assert train("--stage", "sft", "--data", sft_data, "--base", mid / "final", "--output", sft, "--steps", 1) == 0
    adapter_config = json.loads((sft / "final" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str((mid / "final").resolve())

    merged, tokenizer = load_causal_lm(sft / "final", progress=False)
    mid_model, _ = load_causal_lm(mid / "final", progress=False)
    expected = logits(PeftModel.from_pretrained(mid_model, sft / "final").eval(), tokenizer)
    torch.testing.assert_close(logits(merged, tokenizer), expected, atol=1e-5, rtol=1e-5)


def test_full_training_on_a_merged_adapter(base, mid_data, sft_data, tmp_path):
    mid, sft = tmp_path / "mid", tmp_path / "sft"
    assert train("--stage", "midtrain", "--data", mid_data, "--base", base, "--output", mid, "--steps", 1) == 0
    args = ("--stage", "sft", "--data", sft_data, "--base", mid / "final", "--output", sft, "--steps", 1, "--full")
    assert train(*args) == 0
    assert (sft / "final" / "model.safetensors").is_file()


def test_rerun_resumes_from_the_newest_checkpoint(base, sft_data, tmp_path):
    output = tmp_path / "run"
    args = ("--stage", "sft", "--data", sft_data, "--base", base, "--output", output, "--lr", 1e-2)
    assert train(*args, "--steps", 2) == 0
    second = output / "checkpoint-2" / "adapter_model.safetensors"
    written = second.stat().st_mtime_ns, second.stat().st_ino
    first_final = (output / "final" / "adapter_model.safetensors").read_bytes()

    assert train(*args, "--steps", 4) == 0  # continues at step 2: the checkpoints before it are not rewritten
    assert (second.stat().st_mtime_ns, second.stat().st_ino) == written
    assert json.loads((output / "checkpoint-4" / "trainer_state.json").read_text())["step"] == 4
    final = (output / "final" / "adapter_model.safetensors").read_bytes()
    assert final != first_final

    # An interrupted run (its last checkpoint and final missing) resumed with the same command ends identically.
    shutil.rmtree(output / "checkpoint-4")
    shutil.rmtree(output / "final")
    assert train(*args, "--steps", 4) == 0
    assert (output / "final" / "adapter_model.safetensors").read_bytes() == final


def test_resume_refuses_other_data(base, sft_data, mid_data, tmp_path, capsys):
    output = tmp_path / "run"
    assert train("--stage", "sft", "--data", sft_data, "--base", base, "--output", output, "--steps", 1) == 0
    write_jsonl(sft_data, RECORDS[:2])
    capsys.readouterr()
    assert train("--stage", "sft", "--data", sft_data, "--base", base, "--output", output, "--steps", 2) == 2
    err = capsys.readouterr().err
    assert "data_sha256" in err and "new --output" in err


def test_a_checkpoint_that_learned_unsampled_ends_is_not_resumed(base, tmp_path, capsys):
    data = write_jsonl(tmp_path / "agent.jsonl", [{**RECORDS[0], "unsampled_ends": [4]}, RECORDS[1]])
    output = tmp_path / "run"
    assert train("--stage", "sft", "--data", data, "--base", base, "--output", output, "--steps", 1) == 0
    run_file = output / "train-run.json"
    recorded = json.loads(run_file.read_text())
    assert recorded.pop("unsampled_ends") == "not learned"
    run_file.write_text(json.dumps(recorded))  # as written before 2026-12-07, when those ends were learned
    capsys.readouterr()
    assert train("--stage", "sft", "--data", data, "--base", base, "--output", output, "--steps", 2) == 2
    assert "unsampled_ends" in capsys.readouterr().err


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("frontier research: error: ")
    return lines[0]


def test_missing_data_file(base, tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert train("--stage", "sft", "--data", missing, "--base", base, "--output", tmp_path / "run") == 2
    line = one_error_line(capsys)
    assert str(missing) in line and "frontier research trajectories" in line


@pytest.mark.parametrize(
    ("stage", "records", "expected"),
    [
        ("sft", [*RECORDS[:2], TEXTS[0]], [":3:", "--stage sft", "--stage midtrain"]),
        ("midtrain", [TEXTS[0], RECORDS[0]], [":2:", "--stage midtrain", "--stage sft"]),
    ],
)
def test_record_of_the_wrong_kind(base, tmp_path, capsys, stage, records, expected):
    data = write_jsonl(tmp_path / "data.jsonl", records)
    assert train("--stage", stage, "--data", data, "--base", base, "--output", tmp_path / "run") == 2
    line = one_error_line(capsys)
    assert all(part in line for part in expected), line
    assert not (tmp_path / "run").exists()


def test_an_agent_runs_unsampled_ends_are_not_learned(char_tokenizer, tmp_path, capsys):
    from frontier.research.train_cli import encode_records, read_training_records

    # the last turn stopped at a stop string, so its end-of-turn token was never sampled (agent.Trajectory)
    data = write_jsonl(tmp_path / "agent.jsonl", [RECORDS[0], {**RECORDS[0], "unsampled_ends": [4]}])
    records = read_training_records(data, "sft")
    (ids, labels), (same_ids, unsampled_labels) = encode_records(char_tokenizer, records, "sft", 10_000, False, data)[0]
    assert torch.equal(ids, same_ids)
    unlearned = ((labels != -100) & (unsampled_labels == -100)).nonzero().flatten()
    assert len(unlearned) == 1 and labels[unlearned[0]] == char_tokenizer.eos_token_id  # only the last end-of-turn

    bad = write_jsonl(tmp_path / "bad.jsonl", [{**RECORDS[0], "unsampled_ends": ["4"]}])
    assert train("--stage", "sft", "--data", bad, "--base", tmp_path, "--output", tmp_path / "run") == 2
    assert "bad.jsonl:1: 'unsampled_ends' must be a list of message indices" in one_error_line(capsys)


def test_an_agent_run_is_learned_as_the_last_context_its_model_saw(scripted_llm, char_tokenizer, tmp_path, monkeypatch):
    import dataclasses

    from frontier.research.agent import FORCED_ANSWER, AgentBudget, ResearchAgent
    from frontier.research.prompts import FORCED_ANSWER_PROMPT
    from frontier.research.tools import SearchResult, SearchTool
    from frontier.research.train_cli import encode_records, read_training_records

    class Norway:
        def search(self, query, k):
            return [SearchResult("Norway", "doc/norway", "Capital: Oslo")]

    llm = scripted_llm([CALL, "<think>ok</think>\n<answer>Oslo</answer>"])
    complete = llm.complete  # both turns stopped before an end-of-turn token (a stop string, the token limit)
    monkeypatch.setattr(llm, "complete", lambda *a, **k: dataclasses.replace(complete(*a, **k), model_ended=False))
    # the system prompt alone passes a 200-token cap: after the search the model is told to answer now
    run = ResearchAgent(llm, [SearchTool(Norway())], AgentBudget(max_context_tokens=200)).run("Capital of Norway?")
    assert run.termination == FORCED_ANSWER and run.unsampled_ends == [2, 4]
    assert [m["role"] for m in run.messages][3:] == ["user", "user", "assistant"]  # the record keeps the search too
    data = write_jsonl(tmp_path / "agent.jsonl", [{**run.to_json(), "source": "agent"}])
    ((ids, labels),) = encode_records(char_tokenizer, read_training_records(data, "sft"), "sft", 10_000, False, data)[0]
    text = char_tokenizer.decode(ids)
    assert FORCED_ANSWER_PROMPT in text and "Capital: Oslo" not in text  # what the model saw when it answered
    assert not (labels == char_tokenizer.eos_token_id).any()  # neither turn's end-of-turn token is learned


def test_every_record_too_long(base, sft_data, tmp_path, capsys):
    output = tmp_path / "run"
    args = ("--stage", "sft", "--data", sft_data, "--base", base, "--output", output, "--max-length", 100)
    assert train(*args) == 2
    line = one_error_line(capsys)
    assert "all 3 records" in line and "--max-length 100" in line and "--truncate" in line
    assert not output.exists()

    # With --truncate, the records keep their first 100 tokens (the first assistant turn starts within them).
    assert train(*args, "--truncate", "--steps", 1) == 0
    assert "truncated 3 to 100 tokens" in capsys.readouterr().err


def test_adapter_with_missing_base(base, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(base, progress=False)
    adapter = tmp_path / "adapter"
    get_peft_model(model, LoraConfig(r=2, target_modules="all-linear")).save_pretrained(adapter)
    config_path = adapter / "adapter_config.json"
    missing = tmp_path / "moved-away"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "base_model_name_or_path": str(missing)}))

    with pytest.raises(ModelLoadError) as error:
        load_causal_lm(adapter, progress=False)
    message = str(error.value)
    assert "base_model_name_or_path" in message and str(missing) in message and "set base_model_name_or_path" in message

    # As a --base, the same message comes as one line; a model that cannot load is exit code 1 (2 is for usage).
    data = write_jsonl(tmp_path / "sft.jsonl", RECORDS)
    assert train("--stage", "sft", "--data", data, "--base", adapter, "--output", tmp_path / "run") == 1
    assert str(missing) in one_error_line(capsys)


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(base, sft_data, tmp_path):
    """Two CPU processes (DDP over gloo). `accelerate launch --cpu --num_processes 2` starts only one process unless
    mpirun is configured; its torch.distributed launcher (`--multi_gpu`) starts two, which train on the CPU when no
    GPU is visible."""
    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
        "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "frontier", "research", "train", "--stage",
        "sft", "--data", str(sft_data), "--base", str(base), "--output", str(output), "--steps", "2", "--grad-accum",
        "2", "--checkpoint-every", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("3 of 3 records") == 1  # only the main process reports
    assert "(2 processes)" in done.stderr
    assert json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())["step"] == 2
    model, _ = load_causal_lm(output / "final", progress=False)
    assert isinstance(model, LlamaForCausalLM)


def test_loss_command_reports_the_trained_loss(base, sft_data, tmp_path, capsys):
    from frontier.research.training import encode_trajectory, mean_token_loss

    output = tmp_path / "run"
    code = train("--stage", "sft", "--data", sft_data, "--base", base, "--output", output, "--steps", 4, "--lr", 1e-2)
    assert code == 0
    capsys.readouterr()

    reported = {}
    for model in (base, output / "final"):
        assert main(["research", "loss", "--data", str(sft_data), "--model", str(model)]) == 0
        out = capsys.readouterr().out
        assert "over 3 records" in out
        reported[model] = float(out.split()[0])

    trained, tokenizer = load_causal_lm(output / "final", progress=False)
    examples = [encode_trajectory(tokenizer, record["messages"], 10_000) for record in RECORDS]
    assert reported[output / "final"] == pytest.approx(mean_token_loss(trained, examples, batch_size=1), abs=1e-4)
    assert reported[output / "final"] < reported[base]
    assert main(["research", "loss", "--data", str(sft_data), "--model", str(tmp_path / "missing")]) == 2
    assert "--model" in capsys.readouterr().err
