"""Strictly on-policy RL for the research agent, the Tongyi DeepResearch recipe at laptop scale.

    every step: draw questions; the current model answers each `group_size` times in the environment
                reward   = 1 if the answer is correct else 0 (binary, no format reward)
                advantage A_i = r_i - mean of the other rollouts' rewards in its group (leave-one-out)
                drop negatives that were cut off or never answered (they teach "stop early", i.e. format collapse)
                loss = -sum over every learned token t of every kept rollout of A_i * log pi(t) / number of tokens

The loss is token-level (normalised by the step's token count, not per rollout), and only the model's own turns are
learned, as in SFT. One optimizer step per batch of rollouts keeps the ratio pi / pi_old at exactly 1, so PPO-style
clipping (and clip-higher) has nothing to clip and is left out. Rollouts sample at `temperature` with top-p 1 and no
presence penalty, and the loss scores tokens with the same temperature, so the gradient is that of the distribution
the rollouts were really drawn from. (A turn is scored by re-tokenising its text, which can differ from the sampled
tokens where a tokenizer has several spellings of the same string.)

`train_rl` shares the SFT trainer's checkpoints (weights or LoRA adapters + optimizer, atomic, exact resume) and runs
under `accelerate launch`: each process rolls out its share of the step's questions.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from frontier.console import progress_steps
from frontier.errors import ConfigError
from frontier.research.agent import ANSWER, AgentBudget, ResearchAgent
from frontier.research.evaluation import exact_match
from frontier.research.llm import LocalLLM
from frontier.research.training import (
    Example,
    TrainConfig,
    TrainingRun,
    encode_trajectory,
    learned_tokens,
    pad_batch,
    read_step_log,
)

LOG_NAME = "rl_log.jsonl"


@dataclass
class RLConfig(TrainConfig):
    """`TrainConfig` (steps = policy updates) plus the rollout settings; defaults follow the recipe at small scale."""

    lr: float = 1e-6
    group_size: int = 4  # rollouts per question; the leave-one-out baseline needs at least 2
    questions_per_step: int = 2
    temperature: float = 1.0
    max_length: int = 8192  # longer rollouts are left out of the loss (their end, with the answer, would be cut)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.group_size, int) or self.group_size < 2:
            raise ConfigError(f"RLConfig.group_size must be an integer >= 2 (leave-one-out), got {self.group_size!r}")
        if not isinstance(self.questions_per_step, int) or self.questions_per_step < 1:
            raise ConfigError(
                f"RLConfig.questions_per_step must be a positive integer, got {self.questions_per_step!r}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"RLConfig.temperature must be positive, got {self.temperature}")
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ConfigError(f"RLConfig.max_length must be an integer >= 2, got {self.max_length!r}")


@dataclass(frozen=True)
class Episode:
    """One rollout: the conversation the model saw and wrote, its reward, and why it ended."""

    messages: list[dict[str, str]]
    reward: float
    finished: bool  # False when cut off (length, calls, time) or when no answer was given
    termination: str = ""
    tool_calls: int = 0
    unsampled_ends: tuple[int, ...] = ()  # assistant turns (indices into messages) whose end-of-turn was not sampled


class Environment(Protocol):
    """Plays one rollout of `question` with `llm` (the policy being trained) and scores it."""

    def __call__(self, llm: LocalLLM, question, *, temperature: float, seed: int) -> Episode: ...


@dataclass
class AgentEnvironment:
    """The research agent with its tools; reward 1 when the prediction exactly matches the gold answer or an alias,
    however the run ended (as the evaluation scores it: a correct forced answer counts); `learning_signal` drops the
    negatives of runs that were cut off."""

    tools: list
    budget: AgentBudget = field(default_factory=AgentBudget)
    date: str | None = None

    def __post_init__(self) -> None:
        if self.budget.summarize_at is not None:
            raise ConfigError("RL rollouts need the whole conversation the model saw; run them without ReSum")

    def __call__(self, llm, question, *, temperature, seed):
        agent = ResearchAgent(llm, self.tools, self.budget, temperature=temperature, top_p=1.0, date=self.date)
        trajectory = agent.run(question.question, answer=question.answer, seed=seed)
        finished = trajectory.termination == ANSWER
        correct = exact_match(trajectory.prediction, [question.answer, *question.aliases])
        return Episode(
            trajectory.context,
            float(correct),
            finished,
            trajectory.termination,
            sum(trajectory.tool_calls.values()),
            tuple(trajectory.unsampled_ends),
        )


def leave_one_out_advantages(rewards: Sequence[float]) -> list[float]:
    """A_i = r_i - mean_{j != i} r_j: each rollout is compared with its group's others, never with itself."""
    if len(rewards) < 2:
        raise ConfigError("a leave-one-out baseline needs at least 2 rollouts per group")
    total, n = sum(rewards), len(rewards)
    return [r - (total - r) / (n - 1) for r in rewards]


def learning_signal(group: Sequence[Episode]) -> list[tuple[Episode, float]]:
    """(episode, advantage) pairs that enter the loss: nonzero advantage, and no negative that was cut off."""
    advantages = leave_one_out_advantages([episode.reward for episode in group])
    return [(e, a) for e, a in zip(group, advantages, strict=True) if a > 0 or (a < 0 and e.finished)]


def summed_policy_loss(model, examples: Sequence[Example], advantages: Sequence[float], temperature: float):
    """-sum_i A_i * sum over example i's labelled tokens of log pi(token | before), logits divided by temperature."""
    input_ids, attention_mask, labels = pad_batch(examples)
    device = next(model.parameters()).device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits[:, :-1]
    targets = labels[:, 1:].to(device)
    # Only the learned positions go to float32 and the softmax: a [learned, V] tensor, not [B, T, V] (8K tokens of a
    # 49K-word vocabulary would be 1.6 GB per copy).
    rows, positions = (targets != -100).nonzero(as_tuple=True)
    scaled = logits[rows, positions].float() / temperature
    token_log_probs = -F.cross_entropy(scaled, targets[rows, positions], reduction="none")
    weights = torch.tensor(advantages, dtype=token_log_probs.dtype, device=device)[rows]
    return -(weights * token_log_probs).sum()


@dataclass
class StepRecord:
    """What one RL step did; a line of `rl_log.jsonl`."""

    step: int
    reward: float  # mean over every rollout of the step
    solved_groups: int  # groups with at least one correct rollout
    groups: int
    rollouts: int
    learned_rollouts: int
    learned_tokens: int
    dropped_too_long: int
    terminations: dict[str, int]
    tool_calls: float  # mean per rollout
    loss: float
    seconds: float


def train_rl(
    model,
    tokenizer,
    questions: Sequence,
    environment: Environment,
    config: RLConfig,
    output_dir: str | Path,
    *,
    progress: bool = True,
    on_step: Callable[[StepRecord], None] | None = None,
    base_model: str | None = None,
):
    """Improve `model` (or LoRA adapters on it) by on-policy RL on `questions` in `environment`; returns the model.

    A step draws `questions_per_step` questions (a function of seed and step only) and rolls each out `group_size`
    times with seeds derived from (seed, step, question, rollout), so a resumed run repeats the same rollouts. Every
    step is logged to `output_dir/rl_log.jsonl`; checkpoints and the final save are those of `train_causal_lm`
    (`base_model` as there).
    """
    if not questions:
        raise ConfigError("no questions to train on")
    run = TrainingRun(model, config, output_dir, log_name=LOG_NAME)
    accelerator, prepared = run.accelerator, run.prepared
    # Rollouts generate with the unwrapped module; it shares its parameters with the DDP wrapper being trained.
    policy = LocalLLM(accelerator.unwrap_model(prepared), tokenizer, name="policy", presence_penalty=0.0)

    progress = progress and accelerator.is_local_main_process
    with progress_steps("on-policy RL", total=config.steps, enabled=progress) as advance:
        for _ in range(min(run.start, config.steps)):
            advance()
        for step in range(run.start, config.steps):
            began = time.perf_counter()
            rng = random.Random(config.seed * 1_000_003 + step)
            picked = rng.sample(range(len(questions)), min(config.questions_per_step, len(questions)))
            prepared.eval()
            groups = [
                _rollouts(environment, policy, questions[q], config, step, q)
                for q in picked[accelerator.process_index :: accelerator.num_processes]
            ]
            examples, advantages, too_long = _learnable(groups, tokenizer, config.max_length)
            local_tokens = learned_tokens(examples)
            tokens = int(accelerator.reduce(torch.tensor(local_tokens, device=accelerator.device), "sum"))
            loss_value = _policy_update(run, examples, advantages, tokens, config)
            record = _step_record(accelerator, step + 1, groups, len(examples), tokens, too_long, loss_value, began)
            run.log(asdict(record))
            if on_step is not None and accelerator.is_main_process:
                on_step(record)
            run.end_step(step + 1)
            advance()
    return run.finish(tokenizer, base_model)


def _rollouts(environment, policy, question, config: RLConfig, step: int, index: int) -> list[Episode]:
    """The group of `group_size` rollouts of question `index`, each with its own seed (a function of run seed, step,
    question and rollout only)."""
    seeds = [random.Random(f"{config.seed}/{step}/{index}/{i}").getrandbits(31) for i in range(config.group_size)]
    return [environment(policy, question, temperature=config.temperature, seed=seed) for seed in seeds]


def _learnable(groups, tokenizer, max_length: int) -> tuple[list[Example], list[float], int]:
    """The encoded rollouts that enter the loss, their advantages, and how many were too long to learn."""
    examples, advantages, too_long = [], [], 0
    for group in groups:
        for episode, advantage in learning_signal(group):
            input_ids, labels = encode_trajectory(tokenizer, episode.messages, unsampled_ends=episode.unsampled_ends)
            if len(input_ids) > max_length:
                too_long += 1
                continue
            examples.append((input_ids, labels))
            advantages.append(advantage)
    return examples, advantages, too_long


def _policy_update(run: TrainingRun, examples, advantages, tokens: int, config: RLConfig) -> float:
    """One optimizer step on the token-level policy-gradient loss; this process's share of the loss.

    `tokens` counts the learned tokens of every process: DDP averages gradients over processes, so each local sum is
    scaled to give the mean over all of them. A process with nothing to learn still runs a forward and a backward
    (of a zero loss), so its gradient all-reduce pairs with the others'.
    """
    accelerator, prepared, optimizer = run.accelerator, run.prepared, run.optimizer
    prepared.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    if tokens:
        scale = accelerator.num_processes / tokens
        parts = [slice(i, i + config.batch_size) for i in range(0, len(examples), config.batch_size)] or [None]
        for i, part in enumerate(parts):
            with contextlib.nullcontext() if i == len(parts) - 1 else accelerator.no_sync(prepared):
                if part is None:  # a real forward: DDP shares gradients only after its own forward pass
                    dummy = torch.zeros(1, 1, dtype=torch.long, device=accelerator.device)
                    loss = prepared(input_ids=dummy).logits.sum() * 0.0
                else:
                    loss = summed_policy_loss(prepared, examples[part], advantages[part], config.temperature) * scale
                accelerator.backward(loss)
                total += float(loss.detach())
        accelerator.clip_grad_norm_(prepared.parameters(), 1.0)
    optimizer.step()  # without gradients (nothing to learn this step) it changes nothing
    return total


def _step_record(accelerator, step, groups, learned, tokens, too_long, loss, began) -> StepRecord:
    """The step's figures over every process's rollouts."""
    episodes = [episode for group in groups for episode in group]
    local = [
        sum(e.reward for e in episodes), sum(any(e.reward > 0 for e in g) for g in groups), len(groups),
        len(episodes), learned, too_long, sum(e.tool_calls for e in episodes), loss,
    ]  # fmt: skip
    totals = accelerator.reduce(torch.tensor(local, dtype=torch.float64, device=accelerator.device), "sum").tolist()
    reward, solved, group_count, rollouts, learned, too_long, tool_calls, loss = totals
    terminations = Counter(e.termination for e in episodes)
    if accelerator.num_processes > 1:
        gathered = [None] * accelerator.num_processes
        torch.distributed.all_gather_object(gathered, dict(terminations))
        terminations = sum((Counter(t) for t in gathered), Counter())
    return StepRecord(
        step=step, reward=reward / max(rollouts, 1), solved_groups=int(solved), groups=int(group_count),
        rollouts=int(rollouts), learned_rollouts=int(learned), learned_tokens=tokens, dropped_too_long=int(too_long),
        terminations=dict(terminations), tool_calls=tool_calls / max(rollouts, 1),
        loss=loss / accelerator.num_processes, seconds=time.perf_counter() - began,
    )  # fmt: skip


def read_log(output_dir: str | Path) -> list[dict]:
    """The step records of an RL run (`StepRecord` fields, one dict per step, in order)."""
    return read_step_log(Path(output_dir) / LOG_NAME)
