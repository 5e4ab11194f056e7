"""The KDA op-throughput experiment: a tiny-length run of its measuring helper, and the real quick run (slow)."""

import sys

import pytest

from frontier.kda.compiled import cpp_compiler
from frontier.reproduce import Mode, RunContext, Verdict
from frontier.reproduce.experiments.kda_ops import (
    COMPILED,
    FLA,
    HF,
    OURS,
    SDPA,
    _seconds_per_call,
    measure_op_throughput,
)


def test_tiny_run_reports_rows_timings_and_a_figure(tmp_path):
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)
    result = measure_op_throughput(
        ctx, lengths=[64, 128, 192], repeats=1, slow_max_length=64, claim_length=128, compiled=False
    )

    assert len(result.rows) == 8
    assert all(isinstance(row.verdict, Verdict) and row.verdict is not Verdict.ERROR for row in result.rows)
    assert all("T=128" in row.claim for row in result.rows[:5])
    assert result.rows[-1].verdict is Verdict.PASS  # the three KDA implementations agree
    forward = result.metrics["timings_ms"]["forward"]
    assert set(forward[OURS]) == set(forward[SDPA]) == {"64", "128", "192"}
    assert set(forward[FLA]) == set(forward[HF]) == {"64", "128"}  # slow baselines skipped past 64, not at 128
    assert all(ms > 0 for by_t in result.metrics["timings_ms"]["forward_backward"].values() for ms in by_t.values())
    assert result.metrics["matmul_peak_gflops"] > 0 and len(result.metrics["load_average_1min"]) == 2  # warm-up + 1
    assert result.config["lengths"] == [64, 128, 192] and result.seed == 0
    assert (tmp_path / result.figures[0]).stat().st_size > 1000
    assert "triton" not in sys.modules


def test_a_sample_is_the_mean_of_back_to_back_calls_filling_its_time():
    clock = iter(range(100))  # a fake perf_counter: each call takes one "second"
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("frontier.reproduce.experiments.kda_ops.time.perf_counter", lambda: next(clock))
        assert _seconds_per_call(lambda: calls.append(1), min_seconds=5) == 1.0
        assert len(calls) == 5
        assert _seconds_per_call(lambda: calls.append(1), min_seconds=0) == 1.0  # the warm-up pass: one call
        assert len(calls) == 6


def test_without_a_cpp_compiler_the_compiled_rows_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    ctx = RunContext(mode=Mode.QUICK, seed=0, out_dir=tmp_path, progress=False)
    result = measure_op_throughput(ctx, lengths=[64], repeats=1, slow_max_length=64, claim_length=64)

    compiled_rows = [row for row in result.rows if row.claim.startswith(COMPILED)]
    assert len(compiled_rows) == 3 and len(result.rows) == 11
    assert all(row.verdict is Verdict.NOT_COMPARABLE and "no C++ compiler" in row.measured for row in compiled_rows)
    assert COMPILED not in result.metrics["timings_ms"]["forward"]


@pytest.mark.slow
def test_quick_run_measures_all_four_ops_at_4096(reproduce_quick):
    experiment = reproduce_quick("kda-op-throughput")
    assert all(row["verdict"] != Verdict.ERROR.value for row in experiment["rows"])
    ops = (OURS, COMPILED, FLA, HF, SDPA) if cpp_compiler() else (OURS, FLA, HF, SDPA)
    for timings in experiment["metrics"]["timings_ms"].values():
        assert all("4096" in timings[op] for op in ops)
