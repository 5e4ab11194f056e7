import pytest
import torch

from frontier.data.state_tracking import (
    FIRST_SYMBOL,
    POP,
    PUSH,
    SEP,
    mqar_batch,
    palindrome_batch,
    stack_batch,
)
from frontier.errors import ConfigError


def test_mqar_answers_are_the_values_bound_to_each_queried_key():
    ids, labels = mqar_batch(4, num_pairs=5, num_keys=10, num_values=10, gen=torch.Generator().manual_seed(0))
    assert ids.shape == labels.shape == (4, 21)
    for row, lab in zip(ids.tolist(), labels.tolist(), strict=True):
        bound = dict(zip(row[0:10:2], row[1:10:2], strict=True))
        assert len(bound) == 5 and row[10] == SEP
        queried = row[11::2]
        assert sorted(queried) == sorted(bound)
        answers = [x for x in lab if x != -100]
        assert answers == [bound[k] for k in queried]


def test_mqar_needs_enough_keys():
    with pytest.raises(ConfigError, match="num_pairs=5"):
        mqar_batch(1, num_pairs=5, num_keys=3, num_values=3, gen=torch.Generator())


def test_palindrome_target_is_the_reversed_prefix():
    ids, labels = palindrome_batch(3, length=6, num_symbols=8, gen=torch.Generator().manual_seed(0))
    assert (ids[:, 7:] == ids[:, :6].flip(1)).all()
    assert (labels[:, :7] == -100).all() and (labels[:, 7:] == ids[:, 7:]).all()


def test_stack_answers_replay_a_real_stack():
    ids, labels = stack_batch(3, num_ops=40, num_stacks=3, num_symbols=5, gen=torch.Generator().manual_seed(0))
    for row, lab in zip(ids.tolist(), labels.tolist(), strict=True):
        stacks = {}
        pops = 0
        for i in range(0, len(row), 3):
            op, sid, val = row[i : i + 3]
            if op == PUSH:
                stacks.setdefault(sid, []).append(val)
                assert lab[i + 2] == -100
            else:
                assert op == POP and lab[i + 2] == val == stacks[sid].pop()
                pops += 1
        assert pops > 5
    assert ids.min() >= 0 and ids.max() < FIRST_SYMBOL + 3 + 5
