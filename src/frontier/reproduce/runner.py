"""Run registered experiments into a report folder that is resumable and appears atomically.

A run writes into `reports/.partial-<timestamp>/`, saving each finished experiment as `experiments/<name>.json`.
When every experiment is done it renders `results.json`, `report.md` and `index.html`, renames the folder to
`reports/<timestamp>/` and points `reports/latest` at it. An interrupted run keeps its partial folder;
`--resume` picks it up (the newest partial run of the same mode, seed and experiments) and skips the experiments it
already finished; long experiments also keep finished units of work (`RunContext.resumable`).
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from frontier.errors import ConfigError
from frontier.io import atomic_symlink, atomic_write_json, atomic_write_text, exclusive_lock
from frontier.reproduce.registry import (
    ClaimRow,
    ExperimentResult,
    ExperimentSpec,
    Mode,
    RunContext,
    Verdict,
)
from frontier.reproduce.report import collect_environment, render_html, render_markdown

PARTIAL_PREFIX = ".partial-"
RUN_LOCK = ".lock"  # held by the process running a partial folder, so that a second `--resume` cannot join it


@dataclass
class RunOutcome:
    report_dir: Path
    results: list[ExperimentResult]

    @property
    def errors(self) -> list[ExperimentResult]:
        return [r for r in self.results if any(row.verdict is Verdict.ERROR for row in r.rows)]


def find_resumable(reports_dir: Path, mode: Mode, seed: int, names: list[str]) -> Path | None:
    """The newest unfinished run with the same mode, seed and experiments, if any: resuming `--only a` must not
    finish (and so close) a run of `--only b` that is still under way."""
    candidates = sorted(reports_dir.glob(f"{PARTIAL_PREFIX}*"), reverse=True)
    for folder in candidates:
        try:
            run = json.loads((folder / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        same_experiments = sorted(run.get("experiments", [])) == sorted(names)
        if run.get("mode") == mode.value and run.get("seed") == seed and same_experiments:
            return folder
    return None


def _unique_stamp(reports_dir: Path) -> str:
    """A timestamp naming this run; suffixed when another run (partial or finished) started the same second."""
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    candidate, suffix = stamp, 1
    while (reports_dir / candidate).exists() or (reports_dir / f"{PARTIAL_PREFIX}{candidate}").exists():
        candidate, suffix = f"{stamp}-{suffix}", suffix + 1
    return candidate


def _stored_result(path: Path) -> ExperimentResult | None:
    """A finished experiment of the run being resumed; a file that cannot be read (a full disk, a hand edit) counts
    as not finished, so the experiment runs again instead of breaking every resume."""
    try:
        return ExperimentResult.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"{path} is unreadable ({type(exc).__name__}: {exc}); running that experiment again", stacklevel=4
        )
        return None


def _error_result(spec: ExperimentSpec, mode: Mode, seconds: float, exc: BaseException) -> ExperimentResult:
    row = ClaimRow(
        claim=f"{spec.title}: experiment ran to completion",
        measured=f"{type(exc).__name__}: {exc}",
        verdict=Verdict.ERROR,
        command=f"frontier reproduce --only {spec.name}",
        detail="".join(traceback.format_exception(exc))[-4000:],
    )
    return ExperimentResult(name=spec.name, title=spec.title, rows=[row], mode=mode.value, seconds=seconds)


def run_experiments(
    specs: list[ExperimentSpec],
    mode: Mode,
    reports_dir: Path,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    on_result=None,
) -> RunOutcome:
    """Run `specs` in order and write the report; `on_result(result)` is called as each one finishes."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    names = [spec.name for spec in specs]
    environment = collect_environment()
    work_dir = find_resumable(reports_dir, mode, seed, names) if resume else None
    resumed = work_dir is not None
    if work_dir is None:
        started = _unique_stamp(reports_dir)
        work_dir = reports_dir / f"{PARTIAL_PREFIX}{started}"
        work_dir.mkdir()
    finished_meanwhile = ConfigError(f"{work_dir} was finished by another process just now: run again")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(work_dir / RUN_LOCK, wait=False))
        except BlockingIOError:
            raise ConfigError(
                f"{work_dir} is being run by another `frontier reproduce` process: wait for it to finish, or stop "
                "it and run again with --resume"
            ) from None
        except FileNotFoundError:  # renamed to its final name between our finding it and locking it
            raise finished_meanwhile from None
        if resumed and not (work_dir / "run.json").is_file():  # locked the moment its finisher let go
            raise finished_meanwhile
        return _run_locked(specs, mode, seed, names, environment, work_dir, resumed, progress, on_result)


def _run_locked(
    specs: list[ExperimentSpec],
    mode: Mode,
    seed: int,
    names: list[str],
    environment: dict,
    work_dir: Path,
    resumed: bool,
    progress: bool,
    on_result,
) -> RunOutcome:
    """`run_experiments` in its partial folder, holding the folder's lock."""
    reports_dir = work_dir.parent
    commit = environment["git_commit"]  # read once: the code this process imported, whatever the checkout does later
    if not resumed:
        started = work_dir.name.removeprefix(PARTIAL_PREFIX)
        run = {
            "started": started, "mode": mode.value, "seed": seed, "experiments": names, "environment": environment,
        }  # fmt: skip
        atomic_write_json(work_dir / "run.json", run)
    else:
        run = json.loads((work_dir / "run.json").read_text())
        run.setdefault("resumed", []).append({"at": datetime.now().strftime("%Y-%m-%dT%H-%M-%S"), "git_commit": commit})
        atomic_write_json(work_dir / "run.json", run)
        started_at = run["environment"].get("git_commit")
        if commit != started_at or commit.endswith("-dirty"):
            # Finished experiments and units are kept, not recomputed: the report names each experiment's commit.
            changed = "uncommitted changes cannot be compared" if commit == started_at else f"now {commit}"
            warnings.warn(
                f"resuming {work_dir.name}, started at commit {started_at} ({changed}): its finished experiments "
                "and units are kept as they are",
                stacklevel=3,
            )

    results: list[ExperimentResult] = []
    for spec in specs:
        stored = work_dir / "experiments" / f"{spec.name}.json"
        result = _stored_result(stored)
        if result is None:
            ctx = RunContext(mode=mode, seed=seed, out_dir=work_dir, progress=progress)
            t0 = time.perf_counter()
            try:
                result = spec.fn(ctx)
                result.seconds = time.perf_counter() - t0
                result.name, result.title, result.mode = spec.name, spec.title, mode.value
                result.git_commit = commit
            except Exception as exc:  # an experiment's crash is reported, and the others still run
                result = _error_result(spec, mode, time.perf_counter() - t0, exc)
            if result.rows and all(row.verdict is not Verdict.ERROR for row in result.rows):
                atomic_write_json(stored, result.to_dict())  # errors are retried on resume, successes are not
        results.append(result)
        if on_result is not None:
            on_result(result)

    run["finished"] = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    results_json = {"run": run, "results": [r.to_dict() for r in results]}
    atomic_write_json(work_dir / "results.json", results_json, strict=True)  # read by other tools: no NaN
    atomic_write_text(work_dir / "report.md", render_markdown(run, results))
    atomic_write_text(work_dir / "index.html", render_html(run, results, work_dir))

    final_dir = reports_dir / run["started"]
    work_dir.rename(final_dir)
    atomic_symlink(final_dir.name, reports_dir / "latest")
    return RunOutcome(report_dir=final_dir, results=results)
