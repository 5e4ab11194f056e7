"""The experiment registry, the runner (atomic, resumable) and the report writer, with fake experiments."""

from __future__ import annotations

import json
import os

import pytest

from frontier.errors import ConfigError, ExperimentNotFoundError
from frontier.io import exclusive_lock
from frontier.reproduce import (
    ClaimRow,
    ExperimentResult,
    Measurement,
    Mode,
    Registry,
    RunContext,
    Verdict,
    run_experiments,
)
from frontier.reproduce.plots import bar_chart
from frontier.reproduce.report import allocator_settings, render_html, render_markdown
from frontier.reproduce.runner import RUN_LOCK


def _row(verdict: Verdict, claim: str = "a claim") -> ClaimRow:
    return ClaimRow(claim=claim, measured="1.0 s", verdict=verdict, command="frontier reproduce --only x")


def _registry(calls: list[str], fail_on: str | None = None, interrupt_on: str | None = None) -> Registry:
    registry = Registry()

    @registry.register("alpha", "Alpha experiment", system="test")
    def alpha(ctx):
        calls.append("alpha")
        figure = ctx.figure_path("alpha", "bars")
        bar_chart(figure, ["a", "b"], [1.0, 2.0], ylabel="y", title="t", intervals=[(0.5, 1.5), (1.8, 2.2)])
        return ExperimentResult(
            rows=[_row(Verdict.PASS, "alpha holds"), _row(Verdict.NOT_COMPARABLE)],
            metrics={"x": 1.0},
            figures=[str(figure.relative_to(ctx.out_dir))],
        )

    @registry.register("beta", "Beta experiment", system="test")
    def beta(ctx):
        calls.append("beta")
        if fail_on == "beta":
            raise RuntimeError("beta exploded")
        if interrupt_on == "beta":
            raise KeyboardInterrupt
        return ExperimentResult(rows=[_row(Verdict.FAIL, "beta | with a pipe")])

    return registry


def test_run_writes_report_results_and_latest(tmp_path):
    calls: list[str] = []
    registry = _registry(calls)
    outcome = run_experiments(registry.select(None), Mode.QUICK, tmp_path, progress=False)
    assert calls == ["alpha", "beta"]
    folder = outcome.report_dir
    assert os.readlink(tmp_path / "latest") == folder.name
    assert not list(tmp_path.glob(".partial-*"))

    data = json.loads((folder / "results.json").read_text())
    assert [r["name"] for r in data["results"]] == ["alpha", "beta"]
    assert data["run"]["environment"]["torch"].startswith("2.13.0")
    assert data["run"]["environment"]["git_commit"]

    report = (folder / "report.md").read_text()
    assert "## Environment" in report and "alpha holds" in report and "beta \\| with a pipe" in report
    assert "![alpha-bars](figures/alpha-bars.png)" in report
    html = (folder / "index.html").read_text()
    assert "data:image/png;base64," in html and "alpha holds" in html


def test_report_is_a_pure_function_of_results_json(tmp_path):
    outcome = run_experiments(_registry([]).select(None), Mode.QUICK, tmp_path, progress=False)
    data = json.loads((outcome.report_dir / "results.json").read_text())
    results = [ExperimentResult.from_dict(r) for r in data["results"]]
    assert render_markdown(data["run"], results) == (outcome.report_dir / "report.md").read_text()
    assert render_html(data["run"], results, outcome.report_dir) == (outcome.report_dir / "index.html").read_text()


def test_a_crashing_experiment_is_reported_and_the_rest_still_run(tmp_path):
    calls: list[str] = []
    outcome = run_experiments(_registry(calls, fail_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    assert calls == ["alpha", "beta"]
    assert [r.name for r in outcome.errors] == ["beta"]
    (row,) = outcome.errors[0].rows
    assert row.verdict is Verdict.ERROR and "beta exploded" in row.measured and "Traceback" in row.detail


def test_an_interrupted_run_resumes_without_repeating_finished_work(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiments(_registry(calls, interrupt_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    (partial,) = tmp_path.glob(".partial-*")
    assert (partial / "experiments" / "alpha.json").is_file()
    assert not (tmp_path / "latest").exists()

    calls.clear()
    outcome = run_experiments(_registry(calls).select(None), Mode.QUICK, tmp_path, resume=True, progress=False)
    assert calls == ["beta"]
    assert [r.name for r in outcome.results] == ["alpha", "beta"]
    assert not list(tmp_path.glob(".partial-*"))


def test_a_run_resumed_under_other_code_says_which_commit_computed_what(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiments(_registry(calls, interrupt_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    (partial,) = tmp_path.glob(".partial-*")
    run = json.loads((partial / "run.json").read_text())
    run["environment"]["git_commit"] = "0ld0ld0"  # as if the run had started at an older commit
    (partial / "run.json").write_text(json.dumps(run))
    stored = partial / "experiments" / "alpha.json"
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "git_commit": "0ld0ld0"}))
    with pytest.warns(UserWarning, match="started at commit 0ld0ld0"):
        outcome = run_experiments(_registry(calls).select(None), Mode.QUICK, tmp_path, resume=True, progress=False)
    report = (outcome.report_dir / "report.md").read_text()
    beta = next(r for r in outcome.results if r.name == "beta")
    assert beta.git_commit and f"computed at commit {beta.git_commit}" in report
    assert "computed at commit 0ld0ld0" not in report and f"at commit {beta.git_commit} |" in report  # resumed row


def test_an_unreadable_finished_experiment_is_run_again(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiments(_registry(calls, interrupt_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    (partial,) = tmp_path.glob(".partial-*")
    (partial / "experiments" / "alpha.json").write_text("")
    calls.clear()
    with pytest.warns(UserWarning, match="alpha.json is unreadable"):
        run_experiments(_registry(calls).select(None), Mode.QUICK, tmp_path, resume=True, progress=False)
    assert calls == ["alpha", "beta"]


def test_resume_ignores_partial_runs_of_another_mode(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiments(_registry(calls, interrupt_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    calls.clear()
    run_experiments(_registry(calls).select(None), Mode.FULL, tmp_path, resume=True, progress=False)
    assert calls == ["alpha", "beta"]


def test_resume_ignores_partial_runs_of_other_experiments(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiments(_registry(calls, interrupt_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    calls.clear()
    run_experiments(_registry(calls).select(["beta"]), Mode.QUICK, tmp_path, resume=True, progress=False)
    assert calls == ["beta"]
    assert len(list(tmp_path.glob(".partial-*"))) == 1  # the interrupted alpha+beta run is left to resume

    calls.clear()
    run_experiments(_registry(calls).select(["beta", "alpha"]), Mode.QUICK, tmp_path, resume=True, progress=False)
    assert calls == ["beta"]  # the same experiments in another order: alpha was already done
    assert not list(tmp_path.glob(".partial-*"))


def test_a_resumable_unit_is_reused_only_with_its_config(tmp_path):
    ctx = RunContext(mode=Mode.FULL, seed=0, out_dir=tmp_path, progress=False)
    calls: list[int] = []

    def compute() -> dict:
        calls.append(1)
        return {"loss": 0.5 * len(calls)}

    assert ctx.resumable("exp", "Model A / seed 0", {"steps": 10}, compute) == {"loss": 0.5}
    assert ctx.resumable("exp", "Model A / seed 0", {"steps": 10}, compute) == {"loss": 0.5}
    assert (tmp_path / "exp-units" / "model-a-seed-0.json").is_file()
    assert ctx.resumable("exp", "Model A / seed 0", {"steps": 20}, compute) == {"loss": 1.0}
    assert len(calls) == 2


def test_unknown_experiment_suggests_close_names():
    registry = _registry([])
    with pytest.raises(ExperimentNotFoundError, match=r"Did you mean alpha\?.*Available: alpha, beta"):
        registry.select(["alpah"])


def test_registering_a_name_twice_is_an_error():
    registry = _registry([])
    with pytest.raises(ConfigError, match="registered twice"):
        registry.register("alpha", "again", system="test")(lambda ctx: None)


def test_measurement_formats_interval_and_count():
    assert str(Measurement(14.83, "tok/s", 14.1, 15.6, n=5)) == "14.83 [14.1, 15.6] tok/s (n=5)"
    assert str(Measurement(0.5)) == "0.5"


def test_allocator_settings_name_what_changes_memory_reuse(monkeypatch):
    for name in [n for n in os.environ if n.startswith("MALLOC_") or n in ("LD_PRELOAD", "PYTORCH_CUDA_ALLOC_CONF")]:
        monkeypatch.delenv(name)
    assert allocator_settings() == "default"
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "17179869184")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    monkeypatch.setenv("MALLOCX", "not an allocator setting")  # only MALLOC_*, LD_PRELOAD, PYTORCH_CUDA_ALLOC_CONF
    assert allocator_settings() == "LD_PRELOAD=/usr/lib/libjemalloc.so.2, MALLOC_TRIM_THRESHOLD_=17179869184"


def test_a_partial_run_in_use_cannot_be_resumed_by_a_second_process(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiments(_registry(calls, interrupt_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    (partial,) = tmp_path.glob(".partial-*")
    calls.clear()
    in_use = pytest.raises(ConfigError, match="being run by another `frontier reproduce` process")
    with exclusive_lock(partial / RUN_LOCK), in_use:  # held as the process running it would hold it
        run_experiments(_registry(calls).select(None), Mode.QUICK, tmp_path, resume=True, progress=False)
    assert calls == []
    run_experiments(_registry(calls).select(None), Mode.QUICK, tmp_path, resume=True, progress=False)
    assert calls == ["beta"]


def test_a_partial_run_finished_while_resuming_is_a_clear_error(tmp_path, monkeypatch):
    from frontier.reproduce import runner

    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiments(_registry(calls, interrupt_on="beta").select(None), Mode.QUICK, tmp_path, progress=False)
    (partial,) = tmp_path.glob(".partial-*")

    def finished_first(path, **kwargs):  # the other process renames the folder just before we lock it
        partial.rename(tmp_path / "finished")
        return exclusive_lock(path, **kwargs)

    monkeypatch.setattr(runner, "exclusive_lock", finished_first)
    with pytest.raises(ConfigError, match="was finished by another process just now"):
        run_experiments(_registry(calls).select(None), Mode.QUICK, tmp_path, resume=True, progress=False)
