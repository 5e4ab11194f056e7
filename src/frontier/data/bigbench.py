"""BIG-bench tasks from source distributions on PyPI (evaluation only), two ways:

- `load_task`: the published task.json files, read straight from the `bigbench==1.0.0` sdist (358 MB, fetched once
  into the frontier cache; PyPI no longer serves it as of 2026-12, so point $FRONTIER_BIGBENCH_SDIST at a copy).
- `load_generated_task`: the tasks that BIG-bench builds with a generator script (arithmetic, object_counting), made
  by running BIG-bench's own script from the `bigbench==0.0.1` sdist (358 KB, still on PyPI). The arithmetic script
  seeds itself (42), so it rewrites the published examples; the object-counting script does not, and we run it seeded
  (`random.seed(0)`, PYTHONHASHSEED=0): a fixed draw from the same distribution as the published file.

The package itself is never installed (its dependencies are heavy); task files land atomically in the cache.
BIG-bench files carry a canary asking that they never be used for training; frontier only evaluates on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from frontier.errors import ConfigError, FrontierError
from frontier.io import atomic_write_bytes

VERSION = "1.0.0"
SDIST_NAME = f"bigbench-{VERSION}.tar.gz"
TASKS_PREFIX = f"bigbench-{VERSION}/bigbench/benchmark_tasks/"
# Point at an already downloaded sdist (air-gapped machines, tests) instead of running `pip download`.
SDIST_ENV = "FRONTIER_BIGBENCH_SDIST"

GENERATOR_VERSION = "0.0.1"
GENERATOR_SDIST_NAME = f"bigbench-{GENERATOR_VERSION}.tar.gz"
GENERATOR_SDIST_ENV = "FRONTIER_BIGBENCH_GENERATOR_SDIST"
# Task family → its generator script inside the 0.0.1 sdist, and the seed we add where the script sets none.
GENERATORS = {
    "arithmetic": (f"bigbench-{GENERATOR_VERSION}/bigbench/benchmark_tasks/arithmetic/generate_examples.py", None),
    "object_counting": (f"bigbench-{GENERATOR_VERSION}/bigbench/benchmark_tasks/object_counting/generate_task.py", 0),
}
GENERATOR_TIMEOUT_S = 300


@dataclass(frozen=True)
class BigBenchExample:
    """input text and the accepted answers (for multiple-choice tasks: the choice(s) with the top score)."""

    input: str
    targets: tuple[str, ...]


def bigbench_cache_dir(version: str = VERSION) -> Path:
    from frontier.models.loading import cache_root

    return cache_root() / f"bigbench-{version}"


def _task_file(name: str) -> Path:
    return bigbench_cache_dir() / "tasks" / name.replace("/", "__") / "task.json"


def sdist_path(progress: bool = True) -> Path:
    """The 1.0.0 sdist: $FRONTIER_BIGBENCH_SDIST, else the cached copy, else downloaded with pip into the cache."""
    return _sdist(VERSION, SDIST_ENV, "358 MB", progress)


def _sdist(version: str, env: str, size: str, progress: bool) -> Path:
    name = f"bigbench-{version}.tar.gz"
    if os.environ.get(env):
        path = Path(os.environ[env])
        if not path.is_file():
            raise ConfigError(f"{env}={path}: no such file; unset it or point it at {name}")
        return path
    cached = bigbench_cache_dir(version) / name
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", f"bigbench=={version}", "--no-deps",
                   "--no-binary", ":all:", "--dest", tmp, "--quiet"]  # fmt: skip
        if progress:
            print(f"downloading the BIG-bench {version} sdist ({size}, once) into {cached.parent}", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / name
        if result.returncode != 0 or not downloaded.is_file():
            raise FrontierError(
                f"could not download {name} with pip ({result.stderr.strip().splitlines()[-1:]}); "
                f"download it yourself (`pip download bigbench=={version} --no-deps --no-binary :all:`) "
                f"and set {env} to the file"
            )
        os.replace(downloaded, cached)  # same folder, so the rename is atomic
    return cached


def ensure_tasks(names: list[str], progress: bool = True) -> None:
    """Extract the task.json of every named task (e.g. "arithmetic/2_digit_addition") not yet in the cache."""
    missing = {f"{TASKS_PREFIX}{name}/task.json": name for name in names if not _task_file(name).is_file()}
    if not missing:
        return
    with tarfile.open(sdist_path(progress), "r:gz") as archive:
        for member in archive:  # one sequential pass: a gzip stream has no index
            name = missing.pop(member.name, None)
            if name is not None:
                atomic_write_bytes(_task_file(name), archive.extractfile(member).read())
            if not missing:
                break
    if missing:
        raise ConfigError(
            f"no BIG-bench task named {', '.join(sorted(missing.values()))} in {SDIST_NAME}; names look like "
            "'object_counting' or 'arithmetic/2_digit_addition'"
        )


def load_task(name: str, progress: bool = True) -> list[BigBenchExample]:
    """The examples of one published task, in the file's order."""
    ensure_tasks([name], progress)
    return _parse_examples(json.loads(_task_file(name).read_text()))


def load_generated_task(name: str, progress: bool = True) -> list[BigBenchExample]:
    """The examples of one task as BIG-bench's own generator script writes it (see the module docstring)."""
    path = _generated_task_file(name)
    if not path.is_file():
        _run_generator(name, progress)
    return _parse_examples(json.loads(path.read_text()))


def _generated_task_file(name: str) -> Path:
    return bigbench_cache_dir(GENERATOR_VERSION) / "generated" / name.replace("/", "__") / "task.json"


def _run_generator(name: str, progress: bool) -> None:
    """Run the generator script of `name`'s family in a scratch folder and cache every task it writes."""
    family = name.split("/")[0]
    if family not in GENERATORS:
        raise ConfigError(
            f"BIG-bench has no generator script for {name!r}; generated tasks are {sorted(GENERATORS)} "
            "(e.g. 'arithmetic/2_digit_addition'); read other tasks with load_task"
        )
    script_member, seed = GENERATORS[family]
    sdist = _sdist(GENERATOR_VERSION, GENERATOR_SDIST_ENV, "358 KB", progress)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(sdist, "r:gz") as archive:
        try:
            script_text = archive.extractfile(script_member).read()
        except KeyError:
            raise ConfigError(f"{sdist} has no {script_member}: not the bigbench {GENERATOR_VERSION} sdist") from None
        script = Path(tmp) / "generate.py"
        script.write_bytes(script_text)
        # The object-counting script prints its task.json; the arithmetic one writes <subtask>/task.json files.
        prelude = "" if seed is None else f"import random; random.seed({seed}); "
        command = [sys.executable, "-c", f"{prelude}import runpy; runpy.run_path('generate.py', run_name='__main__')"]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=GENERATOR_TIMEOUT_S,
                                env={**os.environ, "PYTHONHASHSEED": "0"})  # fmt: skip
        if result.returncode != 0:
            raise FrontierError(f"BIG-bench's {script_member} failed: {result.stderr.strip()[-500:]}")
        written = {f"{family}/{p.parent.name}": p for p in Path(tmp).glob("*/task.json")}
        if result.stdout.strip():
            written[family] = Path(tmp) / "printed.json"
            written[family].write_text(result.stdout)
        for task, path in written.items():
            atomic_write_bytes(_generated_task_file(task), path.read_bytes())
    if name not in written:
        raise ConfigError(
            f"BIG-bench's {family} generator writes no task {name!r}; it writes {', '.join(sorted(written))}"
        )


def _parse_examples(data: dict) -> list[BigBenchExample]:
    examples = []
    for item in data["examples"]:
        if "target" in item:
            target = item["target"]
            targets = tuple(target) if isinstance(target, list) else (target,)
        else:
            best = max(item["target_scores"].values())
            targets = tuple(choice for choice, score in item["target_scores"].items() if score == best)
        examples.append(BigBenchExample(item["input"], tuple(str(t) for t in targets)))
    return examples
