"""The shared sampling loop: shared prefills, rows leaving the batch at EOS, seeding and the nucleus."""

from __future__ import annotations

import pytest
import torch

from frontier.models.sampling import hard_top_p_mask, prefill, sample, sample_next, static_params


def _tiny(tiny_llama):
    return tiny_llama()


def test_a_row_that_stops_early_does_not_change_the_others(tiny_llama):
    model = _tiny(tiny_llama)
    ids = torch.randint(3, 128, (3, 6), generator=torch.Generator().manual_seed(0))
    free = sample(model, prefill(model, ids), static_params(0, 1), 12, greedy=True, eos_token_id=[])
    stop_id = int(free.tokens[1, 2])  # row 1 stops at its third token
    out = sample(model, prefill(model, ids), static_params(0, 1), 12, greedy=True, eos_token_id=stop_id, pad_token_id=0)
    for row in range(3):
        hits = (free.tokens[row] == stop_id).nonzero()
        end = int(hits[0]) + 1 if len(hits) else 12
        assert torch.equal(out.tokens[row, :end], free.tokens[row, :end])
        assert (out.tokens[row, end:] == 0).all() and out.temperatures[row, end:].isnan().all()
    assert not out.temperatures[0, :3].isnan().any()


def test_repeat_shares_one_prefill_and_leaves_it_reusable(tiny_llama):
    model = _tiny(tiny_llama)
    ids = torch.randint(3, 128, (2, 5), generator=torch.Generator().manual_seed(1))
    start = prefill(model, ids)
    shared = sample(model, start.repeat(3), static_params(0, 1), 6, greedy=True, eos_token_id=[])
    again = sample(model, start.repeat(1), static_params(0, 1), 6, greedy=True, eos_token_id=[])
    separate = sample(model, prefill(model, ids.repeat_interleave(3, 0)), static_params(0, 1), 6, greedy=True,
                      eos_token_id=[])  # fmt: skip
    assert torch.equal(shared.tokens, separate.tokens)
    assert torch.equal(again.tokens, shared.tokens[::3])


def test_sampling_is_seeded_and_reports_its_parameters(tiny_llama):
    model = _tiny(tiny_llama)
    ids = torch.randint(3, 128, (4, 5), generator=torch.Generator().manual_seed(2))

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return sample(model, prefill(model, ids), static_params(0.8, 0.9), 8, eos_token_id=[], generator=generator)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    assert torch.allclose(a.temperatures, torch.full((4, 8), 0.8)) and torch.allclose(a.top_ps, torch.full((4, 8), 0.9))


def test_sample_next_stays_inside_the_nucleus():
    logits = torch.tensor([[3.0, 2.0, 1.0, -1.0, -2.0]]).repeat(500, 1)
    probs = torch.softmax(logits, -1)
    generator = torch.Generator().manual_seed(0)
    for p in (0.1, 0.7, 0.9):
        allowed = hard_top_p_mask(probs[:1], p)[0].nonzero().flatten().tolist()
        drawn = sample_next(logits, torch.ones(500), torch.full((500,), p), generator)
        assert set(drawn.tolist()) == set(allowed)  # 500 draws hit every allowed token and nothing else


def test_penalties_match_a_step_by_step_reference(tiny_llama):
    """Greedy with penalties equals a loop that recomputes every logit over the whole sequence and penalises by hand."""
    model = _tiny(tiny_llama)
    ids = torch.randint(3, 128, (2, 4), generator=torch.Generator().manual_seed(3))
    presence, frequency = 0.7, 0.3
    out = sample(model, prefill(model, ids), static_params(0, 1), 10, greedy=True, eos_token_id=[],
                 presence_penalty=presence, frequency_penalty=frequency)  # fmt: skip
    for row in range(2):
        sequence, generated = ids[row].tolist(), []
        for _ in range(10):
            logits = model(torch.tensor([sequence])).logits[0, -1]
            counts = torch.bincount(torch.tensor(generated, dtype=torch.long), minlength=logits.numel()).float()
            token = int((logits - presence * (counts > 0).float() - frequency * counts).argmax())
            sequence.append(token)
            generated.append(token)
        assert out.tokens[row].tolist() == generated


def test_a_large_presence_penalty_forbids_repeats(tiny_llama):
    model = _tiny(tiny_llama)
    ids = torch.randint(3, 128, (3, 4), generator=torch.Generator().manual_seed(4))
    plain = sample(model, prefill(model, ids), static_params(0, 1), 20, greedy=True, eos_token_id=[])
    assert any(len(set(row)) < 20 for row in plain.tokens.tolist())  # a tiny random model repeats itself
    out = sample(model, prefill(model, ids), static_params(0, 1), 20, greedy=True, eos_token_id=[],
                 presence_penalty=1e4)  # fmt: skip
    assert all(len(set(row)) == 20 for row in out.tokens.tolist())


@pytest.mark.parametrize("candidates", [8, 3], ids=["nucleus-among-candidates", "past-the-candidates"])
def test_sample_next_draws_from_the_reference_nucleus_distribution(monkeypatch, candidates):
    """Every kind of row (nucleus among the top candidates, p = 1, nucleus past them) against probs · hard mask."""
    from frontier.models import sampling

    monkeypatch.setattr(sampling, "NUCLEUS_CANDIDATES", candidates)
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    draws = 40_000
    generator = torch.Generator().manual_seed(0)
    for p in (0.5, 0.8, 0.95, 1.0):
        probs = torch.softmax(logits / 0.7, -1)
        expected = probs * hard_top_p_mask(probs, p)
        expected = expected / expected.sum()
        drawn = sample_next(logits.repeat(draws, 1), torch.full((draws,), 0.7), torch.full((draws,), p), generator)
        frequency = torch.bincount(drawn, minlength=8).double() / draws
        assert (frequency - expected.double()).abs().max() < 0.01, (p, frequency, expected)
        assert (frequency[expected == 0] == 0).all()


def test_sample_next_draws_what_multinomial_over_the_masked_distribution_draws(monkeypatch):
    """The same token as `torch.multinomial(probs · hard_top_p_mask, 1)` for the same generator, row by row, whichever
    way a row's nucleus is found; a NaN p keeps the top token, as the mask does; a scalar p applies to every row."""
    from frontier.models import sampling

    gen = torch.Generator().manual_seed(0)
    logits = torch.cat([8 * torch.randn(3, 5000, generator=gen), torch.randn(3, 5000, generator=gen)])  # peaked, flat
    top_p = torch.tensor([0.5, 0.9, 1.0, 0.9, 0.99, float("nan")])
    temperature = torch.full((6,), 0.8)
    probs = torch.softmax(logits / 0.8, -1)
    for candidates in (256, 8):
        monkeypatch.setattr(sampling, "NUCLEUS_CANDIDATES", candidates)
        for seed in range(20):
            expected = torch.multinomial(probs * hard_top_p_mask(probs, top_p), 1, generator=_seeded(seed))
            drawn = sample_next(logits, temperature, top_p, _seeded(seed))
            assert drawn.tolist() == expected.squeeze(-1).tolist(), (candidates, seed)
    assert sample_next(logits, temperature, torch.tensor(0.0), _seeded(0)).tolist() == probs.argmax(-1).tolist()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
