"""Synthetic recall and state-tracking tasks of the Kimi Linear paper (§5.1, Fig. 4), as next-token prediction.

Each generator returns `(input_ids, labels)` of shape [B, T]. `labels` follows the Hugging Face convention: a copy
of input_ids with −100 everywhere except the answers, and the model predicts labels[:, t] from the tokens before t
(logits[:, t − 1]). Token ids: 0 = pad, 1 = separator, 2 = push, 3 = pop,
then task symbols from `FIRST_SYMBOL` on.
"""

from __future__ import annotations

import torch

from frontier.errors import ConfigError

PAD, SEP, PUSH, POP = 0, 1, 2, 3
FIRST_SYMBOL = 4


def mqar_batch(batch: int, num_pairs: int, num_keys: int, num_values: int, gen: torch.Generator):
    """Multi-query associative recall: k1 v1 … kN vN SEP then every key again, each followed by its value.

    Keys are distinct within a sequence; the model is scored on the value after each queried key.
    """
    if num_pairs > num_keys:
        raise ConfigError(f"num_pairs={num_pairs} needs at least as many distinct keys, got num_keys={num_keys}")
    keys = torch.stack([torch.randperm(num_keys, generator=gen)[:num_pairs] for _ in range(batch)]) + FIRST_SYMBOL
    values = torch.randint(num_values, (batch, num_pairs), generator=gen) + FIRST_SYMBOL + num_keys
    context = torch.stack([keys, values], dim=-1).flatten(1)  # k1 v1 k2 v2 ...
    order = torch.stack([torch.randperm(num_pairs, generator=gen) for _ in range(batch)])
    queries = torch.stack([keys.gather(1, order), values.gather(1, order)], dim=-1).flatten(1)
    ids = torch.cat([context, torch.full((batch, 1), SEP), queries], dim=1)
    labels = torch.full_like(ids, -100)
    answer_positions = torch.arange(context.shape[1] + 2, ids.shape[1], 2)  # each value after a queried key
    labels[:, answer_positions] = ids[:, answer_positions]
    return ids, labels


def palindrome_batch(batch: int, length: int, num_symbols: int, gen: torch.Generator):
    """x1 … xn SEP xn … x1: reproduce the sequence reversed."""
    seq = torch.randint(num_symbols, (batch, length), generator=gen) + FIRST_SYMBOL
    ids = torch.cat([seq, torch.full((batch, 1), SEP), seq.flip(1)], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, length + 1 :] = ids[:, length + 1 :]
    return ids, labels


def stack_batch(batch: int, num_ops: int, num_stacks: int, num_symbols: int, gen: torch.Generator):
    """Independent LIFO stacks: "PUSH id x" pushes x on stack id; "POP id y" must predict y, the top of stack id.

    Pops are drawn only for non-empty stacks (about one op in three is a pop), so every answer is defined.
    """
    stack_base = FIRST_SYMBOL
    symbol_base = FIRST_SYMBOL + num_stacks
    rows_ids, rows_labels = [], []
    for _ in range(batch):
        stacks: list[list[int]] = [[] for _ in range(num_stacks)]
        ids, labels = [], []
        for _ in range(num_ops):
            non_empty = [s for s in range(num_stacks) if stacks[s]]
            if non_empty and torch.rand(1, generator=gen).item() < 1 / 3:
                s = non_empty[torch.randint(len(non_empty), (1,), generator=gen).item()]
                top = stacks[s].pop()
                ids += [POP, stack_base + s, symbol_base + top]
                labels += [-100, -100, symbol_base + top]
            else:
                s = torch.randint(num_stacks, (1,), generator=gen).item()
                x = torch.randint(num_symbols, (1,), generator=gen).item()
                stacks[s].append(x)
                ids += [PUSH, stack_base + s, symbol_base + x]
                labels += [-100, -100, -100]
        rows_ids.append(ids)
        rows_labels.append(labels)
    return torch.tensor(rows_ids), torch.tensor(rows_labels)


def vocab_size(num_symbols: int) -> int:
    """Vocabulary needed for tasks using `num_symbols` task symbols (plus the four control tokens)."""
    return FIRST_SYMBOL + num_symbols
