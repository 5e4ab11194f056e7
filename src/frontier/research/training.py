"""Supervised fine-tuning of a causal LM on agent trajectories and mid-training text (full or LoRA).

Trajectories learn only the assistant turns: the system prompt, the question and every tool response are context
the model reads, never text it should produce. Training runs through `accelerate` (one process on a laptop, DDP
under `accelerate launch`, where the main process writes); checkpoints are written atomically every
`checkpoint_every` steps and a rerun with the same output folder resumes exactly from the newest one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from frontier.console import hf_progress_bars_off, progress_steps
from frontier.errors import BackendUnavailableError, ConfigError
from frontier.io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text
from frontier.models.loading import PEFT_INSTALL

STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
WEIGHTS_NAME = "model.safetensors"
ADAPTER_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
FINAL_NAME = "final"
TRAIN_LOG_NAME = "train_log.jsonl"
# A resumed run may train longer or checkpoint at another pace; any other change would alter the optimisation path.
# A new `steps` also moves the end of the learning-rate decay: the remaining steps follow the new schedule, so the
# result is not what an uninterrupted run with that `steps` would give (only a rerun of the same command is exact).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "gradient_checkpointing")

Example = tuple[torch.Tensor, torch.Tensor]  # (input_ids [T], labels [T] with -100 where nothing is learned)


def encode_trajectory(
    tokenizer, messages: Sequence[dict[str, str]], max_length: int | None = None, unsampled_ends: Collection[int] = ()
) -> Example:
    """Tokenise a whole conversation with the chat template; only the assistant turns are labelled.

    A turn's learned text is what the model itself emits: its content and the end-of-turn token, not the role
    header the template writes before it. The spans are located by rendering the conversation prefix by prefix, so
    they are exact for any template that renders earlier turns the same way whatever follows them; a template that
    rewrites earlier turns (e.g. one dropping past reasoning) is refused. The rendering is tokenised as one text,
    as at inference, and a token is learned when it starts inside an assistant span. Sequences longer than
    `max_length` lose their end (None: no limit). The assistant turns at the indices `unsampled_ends` learn their
    content but not their end-of-turn token (for RL: a stop string or the token limit ended them, not the model).
    """
    if max_length is not None and max_length < 2:
        raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
    if not any(message["role"] == "assistant" for message in messages):
        raise ConfigError("the trajectory has no assistant turn to learn from")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("encode_trajectory needs a fast tokenizer (character offsets); load it with use_fast=True")
    stray = [i for i in unsampled_ends if not (0 <= i < len(messages) and messages[i]["role"] == "assistant")]
    if stray:
        raise ConfigError(
            f"unsampled_ends {stray} are not indices of assistant turns in these {len(messages)} messages"
        )
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        header = tokenizer.apply_chat_template(list(messages[:i]), tokenize=False, add_generation_prompt=True)
        turn = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
        if not (full.startswith(turn) and turn.startswith(header)):
            raise ConfigError(
                f"the chat template renders the conversation up to assistant turn {i} differently from the start "
                "of the whole conversation, or opens that turn differently from its generation prompt (it rewrites "
                "earlier turns, e.g. drops past reasoning), so the assistant text cannot be located; use a template "
                "that renders each turn independently of what follows"
            )
        end = len(turn)
        eos = tokenizer.eos_token
        # Text the template adds after the end-of-turn token (e.g. a newline) is layout, not the model's output.
        if eos and turn.rfind(eos, len(header)) >= 0:
            end = turn.rfind(eos, len(header)) + (0 if i in unsampled_ends else len(eos))
        spans.append((len(header), end))
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = torch.tensor(encoding.input_ids[:max_length])
    labels = torch.full_like(input_ids, -100)
    for position, (start, _) in enumerate(encoding.offset_mapping[:max_length]):
        if any(first <= start < last for first, last in spans):
            labels[position] = input_ids[position]
    if not (labels[1:] != -100).any():
        raise ConfigError(f"no assistant token is left within max_length={max_length}; raise max_length")
    return input_ids, labels


def encode_text(tokenizer, text: str, max_length: int | None = None) -> Example:
    """Tokenise a mid-training document (with the tokenizer's BOS, ending in EOS); every token is learned. Texts longer
    than `max_length` (None: no limit) lose their end."""
    if max_length is not None and max_length < 2:
        raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
    if not text:
        raise ConfigError("empty mid-training text")
    ids = tokenizer(text, add_special_tokens=True).input_ids
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    input_ids = torch.tensor(ids[:max_length])
    return input_ids, input_ids.clone()


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 4  # sequences per forward pass
    lr: float = 1e-5  # full fine-tuning; LoRA usually wants ~1e-4
    seed: int = 0
    checkpoint_every: int = 100
    warmup_steps: int = 0
    gradient_accumulation_steps: int = 1  # an optimizer step sees batch_size * this many sequences
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_target_modules: str | tuple[str, ...] = "all-linear"  # peft's shorthand: every linear layer but the head
    # Recompute each layer's activations in the backward pass: ~1/3 more compute, a fraction of the memory (SmolLM2
    # on a 4K-token trajectory: about 12 GB without it).
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "checkpoint_every", "gradient_accumulation_steps", "lora_rank")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(f"TrainConfig.warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}")
        if not self.lr > 0:
            raise ConfigError(f"TrainConfig.lr must be positive, got {self.lr}")
        if not self.lora_alpha > 0:
            raise ConfigError(f"TrainConfig.lora_alpha must be positive, got {self.lora_alpha}")
        if not self.lora_target_modules:
            raise ConfigError("TrainConfig.lora_target_modules must name at least one module (or 'all-linear')")
        if not isinstance(self.lora_target_modules, str):
            self.lora_target_modules = tuple(self.lora_target_modules)

    def learning_rate_factor(self, step: int) -> float:
        """Linear warmup from 0 over `warmup_steps`, then linear decay to 0 at `steps`."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return (self.steps - step) / (self.steps - self.warmup_steps)


def pad_batch(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, labels), right-padded to the longest example; padding is masked and unlabelled."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.zeros(len(examples), width, dtype=torch.long)
    attention_mask = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (ids, example_labels) in enumerate(examples):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        labels[row, : len(ids)] = example_labels
    return input_ids, attention_mask, labels


def summed_token_loss(model, examples: Sequence[Example]) -> torch.Tensor:
    """Sum over the labelled tokens of the cross-entropy of predicting each from the tokens before it."""
    input_ids, attention_mask, labels = pad_batch(examples)
    device = next(model.parameters()).device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten().to(device), ignore_index=-100, reduction="sum"
    )


def learned_tokens(examples: Sequence[Example]) -> int:
    """How many tokens of `examples` are learned (labelled, after each example's first token)."""
    return sum(int((labels[1:] != -100).sum()) for _, labels in examples)


@torch.no_grad()
def mean_token_loss(model, examples: Sequence[Example], batch_size: int = 8) -> float:
    """Mean cross-entropy per labelled token over `examples` (the quantity training minimises)."""
    total = sum(
        float(summed_token_loss(model, examples[i : i + batch_size])) for i in range(0, len(examples), batch_size)
    )
    return total / learned_tokens(examples)


def _unique_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each tied tensor once (under its first name): safetensors refuses shared storage."""
    state, seen = {}, set()
    for name, tensor in module.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            state[name] = tensor.detach().contiguous()
    return state


def _add_lora(model, config: TrainConfig):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise BackendUnavailableError(f"LoRA training needs peft; run: {PEFT_INSTALL}") from exc
    target = config.lora_target_modules
    lora_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=target if isinstance(target, str) else list(target),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)  # the adapters' random initialisation
    try:
        return get_peft_model(model, lora_config)
    except ValueError as exc:
        raise ConfigError(f"TrainConfig.lora_target_modules={target!r} does not fit this model ({exc})") from exc


def _latest_checkpoint(output_dir: Path) -> Path | None:
    done = [p for p in output_dir.glob("checkpoint-*") if (p / STATE_NAME).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def examples_fingerprint(examples: Sequence[Example]) -> str:
    """A hash of the encoded examples (tokens and labels): a resumed run must train on the same data, and a change in
    how trajectories are encoded changes it too."""
    digest = hashlib.sha256()
    for input_ids, labels in examples:
        digest.update(str(len(input_ids)).encode())
        digest.update(input_ids.cpu().numpy().tobytes())
        digest.update(labels.cpu().numpy().tobytes())
    return digest.hexdigest()


def _save_checkpoint(
    model, optimizer, scheduler, folder: Path, step: int, config: TrainConfig, data: str | None
) -> None:
    """Weights, optimizer, then the state file last: a folder without it is an interrupted save and is ignored."""
    from safetensors.torch import save

    if config.lora:
        from peft import get_peft_model_state_dict

        atomic_write_bytes(folder / ADAPTER_NAME, save(get_peft_model_state_dict(model)))
    else:
        atomic_write_bytes(folder / WEIGHTS_NAME, save(_unique_state(model)))
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    atomic_write_bytes(folder / OPTIMIZER_NAME, buffer.getvalue())
    atomic_write_json(folder / STATE_NAME, {"step": step, "config": asdict(config), "data": data})


def _load_checkpoint(model, optimizer, scheduler, folder: Path, config: TrainConfig, data: str | None) -> int:
    """Restore weights and optimizer state from `folder`; the step it was written at. `data` (see `TrainingRun`)
    must match what the checkpoint recorded."""
    from safetensors.torch import load_file

    state = json.loads((folder / STATE_NAME).read_text())
    current = json.loads(json.dumps(asdict(config)))  # tuples become lists, as in the saved state
    changed = [name for name in current if name not in RESUMABLE_CHANGES and state["config"].get(name) != current[name]]
    if changed:
        raise ConfigError(
            f"{folder} was written with different {', '.join(changed)}; resume with the same settings or use a new "
            "output folder"
        )
    if data is not None and state.get("data") != data:
        written = "on other training data" if state.get("data") else "before frontier recorded its training data"
        raise ConfigError(
            f"{folder} was written {written}; resume with the same data (and the same frontier version, whose "
            "encoding of trajectories may differ), or use a new output folder"
        )
    if config.lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(folder / ADAPTER_NAME))
    else:
        weights = load_file(folder / WEIGHTS_NAME)
        model.load_state_dict(weights, strict=False)
        if set(weights) != set(_unique_state(model)):
            raise ConfigError(f"{folder / WEIGHTS_NAME} does not hold this model's weights; use a new output folder")
    saved_optimizer = torch.load(folder / OPTIMIZER_NAME, weights_only=True)
    optimizer.load_state_dict(saved_optimizer["optimizer"])
    scheduler.load_state_dict(saved_optimizer["scheduler"])
    return state["step"]


def _record_base_model(folder: Path, base_model: str) -> None:
    """Point the saved adapter's config at the base it was trained on (peft writes what the model object says)."""
    config_path = folder / ADAPTER_CONFIG_NAME
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = base_model
    atomic_write_json(config_path, adapter_config)


def train_causal_lm(
    model,
    examples: Sequence[Example],
    config: TrainConfig,
    output_dir: str | Path,
    tokenizer=None,
    progress: bool = True,
    base_model: str | None = None,
):
    """Fine-tune `model` on `examples` (from `encode_trajectory` / `encode_text`); returns the trained model.

    Each step draws `batch_size * gradient_accumulation_steps` examples (a function of seed and step only, so a
    resumed run repeats the same batches) and minimises the mean loss over all their labelled tokens. With
    `config.lora` the base weights stay frozen and the returned model is a peft model carrying the adapters (peft
    injects them into `model` in place; a resumed LoRA run must be given the same base). The result is saved into
    `output_dir/final` (the adapters only for LoRA; the tokenizer too when given). `base_model` (the path of the
    base's folder or .gguf) is recorded as the LoRA adapter's `base_model_name_or_path`, where `load_causal_lm` finds
    the base to merge the adapter into.
    """
    if not examples:
        raise ConfigError("no training examples")
    for i, (input_ids, labels) in enumerate(examples):
        if input_ids.shape != labels.shape or input_ids.ndim != 1:
            raise ConfigError(f"example {i}: input_ids and labels must be 1-D and of equal length")
        if not (labels[1:] != -100).any():
            raise ConfigError(f"example {i} has no labelled token to learn from (all labels after the first are -100)")
    run = TrainingRun(model, config, output_dir, data_fingerprint=examples_fingerprint(examples))
    accelerator, prepared, optimizer = run.accelerator, run.prepared, run.optimizer
    per_step = config.batch_size * config.gradient_accumulation_steps
    if min(per_step, len(examples)) < accelerator.num_processes:
        raise ConfigError(f"each step needs at least one example per process ({accelerator.num_processes})")
    prepared.train()

    progress = progress and accelerator.is_local_main_process
    with progress_steps("fine-tuning", total=config.steps, enabled=progress) as advance:
        for _ in range(min(run.start, config.steps)):
            advance()
        for step in range(run.start, config.steps):
            rng = random.Random(config.seed * 1_000_003 + step)
            picks = [examples[i] for i in rng.sample(range(len(examples)), min(per_step, len(examples)))]
            learned = learned_tokens(picks)
            # Each process takes its share of the step's examples; DDP averages gradients over processes, so each
            # local sum is scaled to give exactly the mean over every labelled token of the step.
            mine = picks[accelerator.process_index :: accelerator.num_processes]
            micro_batches = [mine[i : i + config.batch_size] for i in range(0, len(mine), config.batch_size)]
            torch.manual_seed(config.seed * 1_000_003 + step)  # dropout, if the model has any
            began = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            local_loss = 0.0
            for i, batch in enumerate(micro_batches):
                last = i == len(micro_batches) - 1
                with contextlib.nullcontext() if last else accelerator.no_sync(prepared):
                    loss = summed_token_loss(prepared, batch) * accelerator.num_processes / learned
                    accelerator.backward(loss)
                    local_loss += float(loss.detach())
            accelerator.clip_grad_norm_(prepared.parameters(), 1.0)
            optimizer.step()
            mean_loss = float(accelerator.reduce(torch.tensor(local_loss, device=accelerator.device), "sum"))
            run.log({
                "step": step + 1, "loss": mean_loss / accelerator.num_processes, "learned_tokens": learned,
                "lr": run.scheduler.get_last_lr()[0], "seconds": time.perf_counter() - began,
            })  # fmt: skip
            run.end_step(step + 1)
            advance()
    return run.finish(tokenizer, base_model)


class TrainingRun:
    """What the SFT and RL trainers share: accelerate, LoRA adapters (if configured), AdamW with the warmup-then-decay
    schedule, resuming from the newest complete checkpoint, atomic checkpoints and the final save.

    `start` is the number of optimizer steps already taken (0 for a new run); call `log(record)` and then
    `end_step(n)` after the n-th optimizer step, and `finish()` once at the end. The records of the steps up to the
    newest checkpoint are kept in `output_dir/log_name`, one JSON line per step (see `read_step_log`).
    """

    def __init__(
        self, model, config: TrainConfig, output_dir: str | Path, log_name: str = TRAIN_LOG_NAME,
        find_unused_parameters: bool = False, data_fingerprint: str | None = None,
    ) -> None:  # fmt: skip
        """`find_unused_parameters`: tell DDP that a step may leave some parameters without a gradient (a model
        with several heads trained on a subset of its tasks); DDP refuses such steps otherwise. `data_fingerprint`:
        a digest of the training data, recorded in each checkpoint; a resumed run must bring the same one."""
        from accelerate import Accelerator, DistributedDataParallelKwargs

        self.config = config
        self.data_fingerprint = data_fingerprint
        self.output_dir = Path(output_dir)
        self.log_path = self.output_dir / log_name
        ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])
        if config.gradient_checkpointing:
            # Non-reentrant checkpointing also works when only LoRA adapters (not the inputs) need gradients.
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.model = _add_lora(model, config) if config.lora else model
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, config.learning_rate_factor)
        self.prepared, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        checkpoint = _latest_checkpoint(self.output_dir)
        self.start = 0
        if checkpoint is not None:
            self.start = _load_checkpoint(
                self.model, self.optimizer, self.scheduler, checkpoint, config, data_fingerprint
            )
        # Steps after the newest checkpoint are redone, so their records go.
        self.history = [record for record in read_step_log(self.log_path) if record["step"] <= self.start]

    def log(self, record: dict) -> None:
        """Add a step's record (a JSON-able dict with "step") to the log file, written by the main process."""
        self.history.append(record)
        if self.accelerator.is_main_process:
            atomic_write_text(self.log_path, "".join(json.dumps(line) + "\n" for line in self.history))

    def end_step(self, step: int) -> None:
        """Advance the learning-rate schedule; every `checkpoint_every` steps and at the last, save a checkpoint."""
        self.scheduler.step()
        if step % self.config.checkpoint_every == 0 or step == self.config.steps:
            if self.accelerator.is_main_process:
                folder = self.output_dir / f"checkpoint-{step}"
                _save_checkpoint(
                    self.model, self.optimizer, self.scheduler, folder, step, self.config, self.data_fingerprint
                )
            self.accelerator.wait_for_everyone()

    def finish(self, tokenizer=None, base_model: str | None = None, extras: Callable[[Path], None] | None = None):
        """Save `output_dir/final` (see `save_final`, then `extras(folder)` for any other files that belong with the
        model) from the main process, as one folder that appears complete or not at all; the trained model, in eval
        mode."""
        self.model.eval()
        if self.accelerator.is_main_process:
            with atomic_directory(self.output_dir / FINAL_NAME) as folder:
                save_final(self.model, folder, tokenizer=tokenizer, lora=self.config.lora, base_model=base_model)
                if extras is not None:
                    extras(folder)
        self.accelerator.wait_for_everyone()
        return self.model


def read_step_log(path: str | Path) -> list[dict]:
    """The per-step records of a training run's log file (`train_log.jsonl`, `rl_log.jsonl`), in order."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_final(model, folder: Path, *, tokenizer=None, lora: bool = False, base_model: str | None = None) -> None:
    """The trained model (only the adapters for LoRA, pointing at `base_model`) and the tokenizer, if given."""
    with hf_progress_bars_off():
        model.save_pretrained(folder)
    if lora and base_model is not None:
        _record_base_model(folder, base_model)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
