"""On-policy RL: the leave-one-out advantage, negative filtering, the token-level loss against a per-token loop, and
reward rising on a tiny model in a toy environment; exact resume; the agent environment's reward."""

import json
import shutil

import pytest
import torch

from frontier.errors import ConfigError
from frontier.research.agent import ANSWER, FORCED_ANSWER, NO_ANSWER, AgentBudget
from frontier.research.rl import (
    AgentEnvironment,
    Episode,
    RLConfig,
    learning_signal,
    leave_one_out_advantages,
    read_log,
    summed_policy_loss,
    train_rl,
)
from frontier.research.tools import SearchResult, SearchTool

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only add contention

PROMPTS = ["Say a word.", "Go on."]


@pytest.fixture
def char_model(char_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    def make():
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(char_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1,
            eos_token_id=2,
        )  # fmt: skip
        return LlamaForCausalLM(config).eval()

    return make


class LowercaseStart:
    """Reward 1 when the reply starts with a lowercase letter (26 of the 101 tokens: ~25% for a random model)."""

    def __call__(self, llm, question, *, temperature, seed):
        messages = [{"role": "user", "content": question}]
        reply = llm.complete(messages, max_tokens=2, temperature=temperature, top_p=1.0, seed=seed).text
        return Episode([*messages, {"role": "assistant", "content": reply}], float(reply[:1].islower()), True, ANSWER)


def lowercase_mass(model, tokenizer):
    """The probability the model gives a lowercase first character of its reply (the quantity RL should raise)."""
    good = torch.tensor([tokenizer.decode([i])[:1].islower() for i in range(len(tokenizer))])
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True,
                                           tokenize=False)  # fmt: skip
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        return float(model(ids).logits[0, -1].softmax(-1)[good].sum())


def test_leave_one_out_advantage():
    assert leave_one_out_advantages([1, 0, 0, 0]) == [1.0, -1 / 3, -1 / 3, -1 / 3]
    assert leave_one_out_advantages([1, 1]) == [0.0, 0.0]
    with pytest.raises(ConfigError, match="at least 2"):
        leave_one_out_advantages([1.0])


def test_cut_off_negatives_and_zero_advantages_are_left_out():
    solved = Episode([], 1.0, True, ANSWER)
    wrong = Episode([], 0.0, True, ANSWER)
    cut = Episode([], 0.0, False, NO_ANSWER)
    signal = learning_signal([solved, wrong, cut])
    assert [(episode, round(advantage, 3)) for episode, advantage in signal] == [(solved, 1.0), (wrong, -0.5)]
    assert learning_signal([wrong, cut]) == []  # nobody solved it: nothing to learn


def test_policy_loss_matches_a_per_token_loop(char_model, char_tokenizer):
    from frontier.research.training import encode_trajectory

    model = char_model()
    conversations = [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "yes"}],
        [{"role": "user", "content": "Say it"}, {"role": "assistant", "content": "no way"}],
    ]
    examples = [encode_trajectory(char_tokenizer, c, max_length=100) for c in conversations]
    advantages, temperature = [0.75, -0.25], 0.7

    expected = 0.0
    for (input_ids, labels), advantage in zip(examples, advantages, strict=True):
        with torch.no_grad():
            logits = model(input_ids[None]).logits[0]
        for position in range(1, len(input_ids)):
            if labels[position] != -100:
                log_probs = torch.log_softmax(logits[position - 1] / temperature, dim=-1)
                expected -= advantage * float(log_probs[labels[position]])

    assert float(summed_policy_loss(model, examples, advantages, temperature)) == pytest.approx(expected, rel=1e-5)


def test_reward_rises_in_a_toy_environment(char_model, char_tokenizer, tmp_path):
    model = char_model()
    before = lowercase_mass(model, char_tokenizer)
    config = RLConfig(steps=20, lr=1e-2, group_size=8, questions_per_step=2, batch_size=16, checkpoint_every=10)

    trained = train_rl(model, char_tokenizer, PROMPTS, LowercaseStart(), config, tmp_path, progress=False)

    log = read_log(tmp_path)
    assert [line["step"] for line in log] == list(range(1, 21))
    first, last = [sum(line["reward"] for line in part) / 5 for part in (log[:5], log[-5:])]
    assert last > first + 0.2, (first, last)
    assert lowercase_mass(trained, char_tokenizer) > before + 0.25
    assert (tmp_path / "checkpoint-10").is_dir() and (tmp_path / "final" / "model.safetensors").is_file()
    assert all(line["rollouts"] == 16 and line["groups"] == 2 for line in log)


def test_rewards_that_never_differ_leave_the_model_alone(char_model, char_tokenizer, tmp_path):
    class AlwaysWrong(LowercaseStart):
        def __call__(self, llm, question, *, temperature, seed):
            return Episode(super().__call__(llm, question, temperature=temperature, seed=seed).messages, 0.0, True)

    model = char_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_rl(model, char_tokenizer, PROMPTS, AlwaysWrong(), RLConfig(steps=2, lr=1e-2), tmp_path, progress=False)

    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())
    assert [line["learned_tokens"] for line in read_log(tmp_path)] == [0, 0]


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_repeats_the_same_rollouts(char_model, char_tokenizer, tmp_path, lora):
    config = RLConfig(steps=4, lr=1e-2, group_size=4, checkpoint_every=2, lora=lora, lora_rank=4)
    whole = train_rl(char_model(), char_tokenizer, PROMPTS, LowercaseStart(), config, tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    (tmp_path / "b" / "rl_log.jsonl").write_text((tmp_path / "a" / "rl_log.jsonl").read_text())  # steps 3-4 dropped

    resumed = train_rl(char_model(), char_tokenizer, PROMPTS, LowercaseStart(), config, tmp_path / "b", progress=False)

    expected, actual = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    strip = [{k: v for k, v in line.items() if k != "seconds"} for line in read_log(tmp_path / "a")]
    assert [{k: v for k, v in line.items() if k != "seconds"} for line in read_log(tmp_path / "b")] == strip


@pytest.mark.parametrize(
    "settings", [{"group_size": 1}, {"questions_per_step": 0}, {"temperature": 0.0}, {"max_length": 1}]
)
def test_bad_rl_settings_raise(settings):
    with pytest.raises(ConfigError, match="RLConfig"):
        RLConfig(**settings)


class OneCountry:
    def search(self, query, k):
        return [SearchResult("Norway", "doc/norway", "Capital: Oslo")]


def question(answer="Oslo", aliases=()):
    from types import SimpleNamespace

    return SimpleNamespace(question="What is the capital of Norway?", answer=answer, aliases=list(aliases))


@pytest.mark.parametrize(
    ("reply", "reward", "finished"),
    [
        ("<think>known</think>\n<answer>oslo</answer>", 1.0, True),
        ("<think>guess</think>\n<answer>Bergen</answer>", 0.0, True),
        ("I do not know", 0.0, False),  # no action: error responses until the call budget runs out
    ],
)
def test_agent_environment_rewards_exact_answers(scripted_llm, reply, reward, finished):
    environment = AgentEnvironment([SearchTool(OneCountry())], AgentBudget(max_llm_calls=2), date="2026-01-01")
    llm = scripted_llm([reply, reply])

    episode = environment(llm, question(), temperature=1.0, seed=0)

    assert (episode.reward, episode.finished) == (reward, finished)
    assert episode.messages[0]["role"] == "system"
    if finished:
        assert episode.messages[-1] == {"role": "assistant", "content": reply}
    assert all(request["messages"][0] == episode.messages[0] for request in llm.requests)


def test_a_correct_forced_answer_is_rewarded_as_the_evaluation_scores_it(scripted_llm):
    call = '<tool_call>\n{"name": "search", "arguments": {"query": ["capital of Norway"]}}\n</tool_call>'
    # the system prompt alone passes a 200-token cap: after the search the agent is told to answer now
    environment = AgentEnvironment([SearchTool(OneCountry())], AgentBudget(max_context_tokens=200), date="2026-01-01")
    episode = environment(scripted_llm([call, "<answer>Oslo</answer>"]), question(), temperature=1.0, seed=0)
    assert episode.termination == FORCED_ANSWER and (episode.reward, episode.finished) == (1.0, False)
    wrong = environment(scripted_llm([call, "<answer>Bergen</answer>"]), question(), temperature=1.0, seed=0)
    assert (wrong.reward, wrong.finished) == (0.0, False)  # a cut-off negative, which the loss leaves out
    assert [e for e, _ in learning_signal([episode, wrong])] == [episode]


def test_agent_environment_refuses_resum():
    with pytest.raises(ConfigError, match="ReSum"):
        AgentEnvironment([], AgentBudget(summarize_at=0.8))


def test_log_lines_are_json(char_model, char_tokenizer, tmp_path):
    train_rl(char_model(), char_tokenizer, PROMPTS, LowercaseStart(), RLConfig(steps=1), tmp_path, progress=False)
    (line,) = (tmp_path / "rl_log.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["terminations"] == {ANSWER: 8} and 0 <= record["reward"] <= 1


@pytest.fixture
def saved_base(tmp_path, char_tokenizer):
    """A tiny random Llama with a window long enough for the agent's system prompt in characters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(char_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, tie_word_embeddings=True,
    )  # fmt: skip
    folder = tmp_path / "base"
    LlamaForCausalLM(config).save_pretrained(folder)
    char_tokenizer.save_pretrained(folder)
    return folder


def write_questions(path, splits):
    lines = [
        {
            "id": f"q{i}",
            "question": f"Which country is number {i}?",
            "answer": "Chad",
            "aliases": [],
            "hops": 1,
            "path": [["Chad", "is", "Chad"]],
            "doc_ids": [],
            "template": "test",
            "split": split,
        }
        for i, split in enumerate(splits)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_rl_command_runs_the_agent_and_logs_each_step(saved_base, tmp_path, capsys):
    from frontier.cli import main

    questions = write_questions(tmp_path / "q.jsonl", ["train", "train", "test"])
    code = main([
        "research", "rl", "--questions", str(questions), "--split", "train", "--base", str(saved_base),
        "--output", str(tmp_path / "rl"), "--steps", "1", "--group-size", "2", "--questions-per-step", "1",
        "--max-llm-calls", "1", "--max-tokens-per-turn", "4", "--no-python", "--date", "2026-01-01",
    ])  # fmt: skip

    assert code == 0
    (record,) = read_log(tmp_path / "rl")
    assert record["rollouts"] == 2 and record["reward"] == 0.0  # a random model never answers
    assert "step 1: reward 0.000, solved 0/1 groups" in capsys.readouterr().err
    adapter = json.loads((tmp_path / "rl" / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(saved_base.resolve())


def test_rl_command_resumes_only_the_same_run(saved_base, tmp_path, capsys):
    from frontier.cli import main

    questions = write_questions(tmp_path / "q.jsonl", ["train", "train", "test"])
    args = ["research", "rl", "--questions", str(questions), "--split", "train", "--base", str(saved_base),
            "--output", str(tmp_path / "rl"), "--group-size", "2", "--questions-per-step", "1",
            "--max-tokens-per-turn", "4", "--no-python", "--date", "2026-01-01", "--checkpoint-every", "1"]  # fmt: skip
    assert main([*args, "--steps", "1", "--max-llm-calls", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--steps", "2", "--max-llm-calls", "2"]) == 2
    assert "trained with a different max_llm_calls" in capsys.readouterr().err
    assert (
        main(["research", "rl", "--questions", str(questions), "--split", "test", "--output", str(tmp_path / "t")]) == 2
    )
    assert "--split test is held out for evaluation" in capsys.readouterr().err


def test_training_on_the_shipped_evaluation_set_is_refused(tmp_path, capsys):
    from frontier.cli import main
    from frontier.research.evalset import DEFAULT_EVAL_SET

    for command in (["rl"], ["sample", "--llm", "openai:m@http://127.0.0.1:9/v1"]):
        code = main(["research", *command, "--questions", str(DEFAULT_EVAL_SET), "--output", str(tmp_path / "o")])
        assert code == 2
        assert "200 of these questions are in the shipped evaluation set" in capsys.readouterr().err


def test_a_resumed_rl_run_keeps_the_date_it_recorded(tmp_path):
    from frontier.research.rl_cli import _recorded_date

    assert _recorded_date(tmp_path, default="2026-12-07") == "2026-12-07"  # nothing to resume
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text('{"step": 1}')
    for recorded, expected in (("2026-01-01", "2026-01-01"), (None, None)):  # None: a run from before dates were kept
        (tmp_path / "train-run.json").write_text(json.dumps({"stage": "rl", "date": recorded}))
        assert _recorded_date(tmp_path, default="2026-12-07") == expected


def test_rl_command_names_the_splits_it_found(tmp_path, capsys):
    from frontier.cli import main

    questions = write_questions(tmp_path / "q.jsonl", ["train", "test"])
    code = main(["research", "rl", "--questions", str(questions), "--split", "dev", "--output", str(tmp_path / "o")])

    assert code == 2
    assert "no question has split 'dev' (found: test, train)" in capsys.readouterr().err


TWO_PROCESS_SCRIPT = """
import sys
import torch
from frontier.models.loading import load_causal_lm
from frontier.research.agent import ANSWER
from frontier.research.rl import Episode, RLConfig, train_rl


class LowercaseStart:
    # Reward 1 for a reply that starts lowercase; with flat_second, the second question always rewards 1, so its
    # group has nothing to learn and (with two processes) the process that rolls it out sits idle.

    def __init__(self, flat_second):
        self.flat_second = flat_second

    def __call__(self, llm, question, *, temperature, seed):
        messages = [{"role": "user", "content": question}]
        reply = llm.complete(messages, max_tokens=2, temperature=temperature, top_p=1.0, seed=seed).text
        reward = 1.0 if self.flat_second and question == "Go on." else float(reply[:1].islower())
        return Episode([*messages, {"role": "assistant", "content": reply}], reward, True, ANSWER)


torch.set_num_threads(1)
model, tokenizer = load_causal_lm(sys.argv[1], progress=False)
config = RLConfig(steps=3, lr=1e-2, group_size=4, questions_per_step=2, checkpoint_every=3)
environment = LowercaseStart(flat_second=sys.argv[3] == "flat")
train_rl(model, tokenizer, ["Say a word.", "Go on."], environment, config, sys.argv[2], progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("rewards", ["mixed", "flat"], ids=["both-learn", "one-process-idle"])
def test_two_processes_learn_what_one_process_learns(saved_base, tmp_path, rewards):
    """DDP over gloo on the CPU (`--multi_gpu` with no GPU visible): each process rolls out one question of the step;
    the token-level loss is normalised over both, so the result equals one process rolling out both, also when one
    process has nothing to learn and only the other's gradient counts."""
    import os
    import subprocess
    import sys

    from frontier.models.loading import load_causal_lm

    script = tmp_path / "rl_script.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    for command, output in ((launch, "two"), ([sys.executable], "one")):
        done = subprocess.run(
            [*command, str(script), str(saved_base), str(tmp_path / output), rewards], capture_output=True, text=True,
            env=env, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [line["rollouts"] for line in two] == [8, 8, 8] and [line["groups"] for line in two] == [2, 2, 2]
    assert [line["reward"] for line in two] == [line["reward"] for line in one]
    assert [line["learned_tokens"] for line in two] == [line["learned_tokens"] for line in one]
    expected = load_causal_lm(tmp_path / "one" / "final", progress=False)[0].state_dict()
    actual = load_causal_lm(tmp_path / "two" / "final", progress=False)[0].state_dict()
    assert all(torch.allclose(expected[name], actual[name], atol=1e-5) for name in expected)
