"""Training AutoDeco's heads on a frozen base, from cached or streamed base features (paper §2.1, §3.1).

The base never changes, so its final hidden states can be computed once per example and stored (`cache_features`);
each step then only runs the LM head (to rebuild the logits) and the two tiny heads. Data whose hidden states do not
fit in memory streams instead (`StreamedFeatures`): each step runs the base on its own batch. Both give the same
windows, so the same training run. Runs through `accelerate` (one process on a laptop, DDP under `accelerate
launch`); checkpoints are written atomically every `checkpoint_every` steps and a rerun with the same output folder
resumes from the newest one.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from frontier.autodeco.loss import AutoDecoLossConfig, autodeco_loss
from frontier.autodeco.modeling import AutoDecoForCausalLM, predict_decoding_params, switched_on_heads
from frontier.console import progress_steps
from frontier.errors import ConfigError
from frontier.io import atomic_write_bytes, atomic_write_json

STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"


@dataclass
class Example:
    """One tokenised training sequence: input_ids [T] and labels [T] (−100 on the prompt)."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def encode_examples(tokenizer, pairs: list[dict[str, str]], max_length: int = 512) -> list[Example]:
    """Chat-format each {"prompt", "completion"} pair; only the completion (the assistant's answer) is learned."""
    examples = []
    for i, pair in enumerate(pairs):
        if not pair.get("prompt") or not pair.get("completion"):
            raise ConfigError(f"example {i} needs non-empty 'prompt' and 'completion' fields")
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": pair["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        answer_ids = tokenizer(pair["completion"] + tokenizer.eos_token, add_special_tokens=False).input_ids
        ids = torch.tensor((prompt_ids + answer_ids)[:max_length])
        labels = ids.clone()
        labels[: len(prompt_ids)] = -100
        examples.append(Example(ids, labels))
    return examples


@torch.no_grad()
def cache_features(
    model: AutoDecoForCausalLM, examples: list[Example], batch_size: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(final hidden states [N, H], labels [N]) per example, computed once by the frozen base.

    Only the window that predicts the completion is kept (from the prompt's last token on): the loss never looks
    at the other positions, and prompts are usually most of the sequence. Examples of similar length are run
    together, right-padded: under a causal mask the padding after a sequence cannot change its hidden states.
    """
    windows = [completion_window(example) for example in examples]
    features: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for first in range(0, len(order), batch_size):
        group = order[first : first + batch_size]
        width = max(len(examples[i].input_ids) for i in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for row, i in enumerate(group):
            ids[row, : len(examples[i].input_ids)] = examples[i].input_ids
            mask[row, : len(examples[i].input_ids)] = 1
        device = model.base_model.device
        hidden, _, _ = model.base_forward(ids.to(device), mask.to(device), logits_to_keep=1)  # hidden states only
        for row, i in enumerate(group):
            end = len(examples[i].input_ids)
            # A copy in host memory: the cache must not pin the batch's tensor, nor fill a GPU.
            features[i] = (hidden[row, windows[i] : end].to("cpu", copy=True), examples[i].labels[windows[i] :])
    return features


def completion_window(example: Example) -> int:
    """Where an example's feature window starts: its prompt's last token, the one that predicts the completion."""
    learned = (example.labels != -100).nonzero()
    if len(learned) == 0:
        raise ConfigError("an example has no completion tokens to learn from (all labels are -100)")
    return max(int(learned[0]) - 1, 0)


class StreamedFeatures(Sequence):
    """`cache_features`' windows, computed by the frozen base each time one is read and never stored: training
    memory stays that of one batch, at the cost of a base forward per example per step."""

    def __init__(self, model: AutoDecoForCausalLM, examples: list[Example]) -> None:
        self.model, self.examples = model, examples
        self.windows = [completion_window(example) for example in examples]
        if any(example.labels[start] != -100 for example, start in zip(examples, self.windows, strict=True)):
            # Windows are concatenated per step: one that starts on a learned token would learn it from the previous
            # example's last position.
            raise ConfigError("each example must start with at least one prompt token (label -100)")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        example, start = self.examples[index], self.windows[index]
        ids = example.input_ids[None].to(self.model.base_model.device)
        hidden, _, _ = self.model.base_forward(ids, logits_to_keep=1)
        return hidden[0, start:], example.labels[start:]

    def shapes_and_labels(self):
        """What `features_fingerprint` reads, without running the base."""
        hidden_size = self.model.base_model.config.hidden_size
        for example, start in zip(self.examples, self.windows, strict=True):
            yield (len(example.input_ids) - start, hidden_size), example.labels[start:]


@dataclass
class TrainConfig:
    steps: int = 400  # the paper's convergence point (about 6K samples)
    batch_size: int = 8
    learning_rate: float = 1e-4  # the paper used 5e-6 for 7B+ bases; small bases want more (SimpleDeco: 1e-4)
    seed: int = 0
    checkpoint_every: int = 100
    loss: AutoDecoLossConfig = field(default_factory=AutoDecoLossConfig)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError("steps, batch_size and checkpoint_every must be positive integers")


class TrainableHeads(torch.nn.Module):
    """The two heads as one module, so `accelerate` (DDP, FSDP) wraps exactly what trains and syncs its gradients."""

    def __init__(self, model: AutoDecoForCausalLM) -> None:
        super().__init__()
        self.temp_head, self.top_p_head = model.temp_head, model.top_p_head
        self.enable_temperature_head, self.enable_top_p_head = model.enable_temperature_head, model.enable_top_p_head

    def forward(self, hidden: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return predict_decoding_params(*switched_on_heads(self), hidden, logits)


def _latest_checkpoint(output_dir: Path) -> Path | None:
    done = [p for p in output_dir.glob("checkpoint-*") if (p / STATE_NAME).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def train_heads(
    model: AutoDecoForCausalLM,
    features: Sequence[tuple[torch.Tensor, torch.Tensor]],
    config: TrainConfig,
    output_dir: str | Path,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the heads on cached (a list) or `StreamedFeatures`; returns per-step losses (of this run, after any
    resume)."""
    if not features:
        raise ConfigError("no training examples")
    # StreamedFeatures check their windows when built; reading them here would run the base on every one.
    if not isinstance(features, StreamedFeatures) and any(
        len(labels) == 0 or labels[0] != -100 for _, labels in features
    ):
        raise ConfigError("each feature window must start at a prompt position (label -100); use cache_features")
    for name, trained, enabled in (("temperature", config.loss.train_temperature, model.enable_temperature_head),
                                   ("top_p", config.loss.train_top_p, model.enable_top_p_head)):  # fmt: skip
        if trained and not enabled:
            raise ConfigError(f"the {name} head is switched off in this model (enable_{name}_head=False), so it "
                              f"cannot learn: enable it, or set train_{name}=False")  # fmt: skip
    output_dir = Path(output_dir)
    accelerator = heads_accelerator(model)
    # A head that is not trained is frozen for the run: DDP would otherwise wait for its gradients forever.
    frozen = [head for head, trained in ((model.temp_head, config.loss.train_temperature),
                                         (model.top_p_head, config.loss.train_top_p)) if not trained]  # fmt: skip
    flags = {p: p.requires_grad for head in frozen for p in head.parameters()}
    for parameter in flags:
        parameter.requires_grad_(False)
    try:
        return _train(model, features, config, output_dir, accelerator, progress)
    finally:
        for parameter, flag in flags.items():
            parameter.requires_grad_(flag)


def heads_accelerator(model: AutoDecoForCausalLM):
    """An `Accelerator` on the base model's device. The heads are the model's own modules: they train where the base
    lives (under `accelerate launch`, load the base on `PartialState().device`), so the model still generates."""
    from accelerate import Accelerator

    device = model.base_model.device
    accelerator = Accelerator(cpu=device.type == "cpu")
    placed = torch.device(accelerator.device)
    index = torch.cuda.current_device() if placed.type == "cuda" and placed.index is None else placed.index
    if placed.type != device.type or (device.type == "cuda" and index != device.index):
        raise ConfigError(
            f"the base model is on {device} but this process trains on {placed}: load the base on accelerate's "
            f"device (PartialState().device), or make {device} the current one (torch.cuda.set_device)"
        )
    return accelerator


def _train(model, features, config: TrainConfig, output_dir: Path, accelerator, progress: bool):
    heads = TrainableHeads(model)
    trainable = [p for p in heads.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    heads, optimizer = accelerator.prepare(heads, optimizer)
    lm_head = model.base_model.get_output_embeddings()

    start = 0
    # The data and the base it was read by (None: the embedded model); another base reads other features.
    fingerprint = f"{features_fingerprint(features)} {model.base_model_name_or_path}"
    checkpoint = _latest_checkpoint(output_dir)
    if checkpoint is not None:
        _check_same_run(json.loads((checkpoint / STATE_NAME).read_text()), config, fingerprint, checkpoint)
        resumed = AutoDecoForCausalLM.from_pretrained(checkpoint, base_model=model.base_model)
        switches = ("enable_temperature_head", "enable_top_p_head")
        if any(getattr(resumed, name) != getattr(model, name) for name in switches):
            then, now = (", ".join(n for n in switches if not getattr(m, n)) or "none" for m in (resumed, model))
            raise ConfigError(f"{checkpoint} was trained with heads switched off: {then}, now: {now}; resume with "
                              "the same heads or use a new output folder")  # fmt: skip
        model.temp_head.load_state_dict(resumed.temp_head.state_dict())
        model.top_p_head.load_state_dict(resumed.top_p_head.state_dict())
        optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_NAME, weights_only=True))
        start = json.loads((checkpoint / STATE_NAME).read_text())["step"]

    history = []
    progress = progress and accelerator.is_local_main_process
    with progress_steps("training AutoDeco heads", total=config.steps, enabled=progress) as advance:
        for _ in range(start):
            advance()
        for step in range(start, config.steps):
            # The batch and the easy-token drop depend only on (seed, step), so a resumed run repeats them exactly.
            rng = random.Random(config.seed * 1_000_003 + step)
            picks = rng.sample(range(len(features)), min(config.batch_size, len(features)))
            # Under `accelerate launch` each process takes its share of the batch; DDP averages the gradients.
            picks = picks[accelerator.process_index :: accelerator.num_processes] or picks[:1]
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            optimizer.zero_grad(set_to_none=True)
            # One sequence per step: each window starts at a prompt token (label −100), so the last position of
            # one example never learns the first token of the next.
            windows = [features[i] for i in picks]  # read once: a streamed window costs a base forward
            hidden = torch.cat([hidden for hidden, _ in windows])[None]
            labels = torch.cat([labels for _, labels in windows])[None].to(accelerator.device)
            hidden, logits = head_inputs(lm_head, hidden, accelerator.device)
            temperature, top_p = heads(hidden, logits)
            loss, parts = autodeco_loss(logits, temperature, top_p, labels, config.loss, generator)
            accelerator.backward(loss)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            history.append(parts)
            advance()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                if accelerator.is_main_process:
                    _save_checkpoint(
                        model, optimizer, output_dir / f"checkpoint-{step + 1}", step + 1, config, fingerprint
                    )
                accelerator.wait_for_everyone()
    return history


@torch.no_grad()
def head_inputs(lm_head: torch.nn.Module, hidden: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The heads' inputs on `device`: cached hidden states and the frozen LM head's logits (computed where the LM
    head lives)."""
    logits = lm_head(hidden.to(lm_head.weight.device, lm_head.weight.dtype))
    return hidden.to(device), logits.to(device)


def features_fingerprint(features: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> str:
    """A hash of the training windows' labels and shapes: a resumed run must train on the same data. Cached and
    streamed features of the same examples hash alike, so a run may resume in the other mode."""
    if isinstance(features, StreamedFeatures):
        windows = features.shapes_and_labels()
    else:
        windows = ((tuple(hidden.shape), labels) for hidden, labels in features)
    digest = hashlib.sha256()
    for shape, labels in windows:
        digest.update(str(shape).encode())
        digest.update(labels.cpu().numpy().tobytes())
    return digest.hexdigest()


# Settings a resumed run may change: more steps continue the same run (the learning rate is constant).
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


def _check_same_run(state: dict, config: TrainConfig, fingerprint: str, checkpoint: Path) -> None:
    """Refuse to resume a checkpoint written with other settings or data: the optimizer state would carry its
    learning rate and the steps would mix two runs."""
    stored = {k: v for k, v in state.get("config", {}).items() if k not in RESUMABLE_CHANGES}
    current = {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}
    changed = sorted(k for k in current if stored.get(k) != current[k])
    if changed:
        details = "; ".join(f"{k}: {stored.get(k)!r} then, {current[k]!r} now" for k in changed)
        raise ConfigError(
            f"{checkpoint} was trained with other settings ({details}); rerun with the same settings to resume, "
            "or give another output folder to start afresh"
        )
    # None: a checkpoint from before data was recorded; a bare hash: from before the base was part of it.
    if state.get("data") not in (None, fingerprint, fingerprint.split(" ", 1)[0]):
        raise ConfigError(
            f"{checkpoint} was trained on other data or another base model; rerun with the same "
            "data and base to resume, or give another output folder to start afresh"
        )


def _save_checkpoint(model, optimizer, folder: Path, step: int, config: TrainConfig, data: str) -> None:
    """Heads, optimizer, then the state file last: a folder without it is an interrupted save and is ignored."""
    import io

    model.save_pretrained(folder)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    atomic_write_bytes(folder / OPTIMIZER_NAME, buffer.getvalue())
    atomic_write_json(folder / STATE_NAME, {"step": step, "config": asdict(config), "data": data})
