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

import hashlib
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
# PyPI's digest of that file: a downloaded or cached copy must match before any script in it runs.
GENERATOR_SDIST_SHA256 = "b9e26039040dff2815f2fa5dc20ca0c8dc02052cecded82ad7eb17dbd9e8f182"


@dataclass(frozen=True)
class Generator:
    script: str  # path inside the 0.0.1 sdist
    seed: int | None  # seeded by us where the script seeds nothing
    prints_task: bool  # True: the task JSON on stdout; False: <subtask>/task.json files in its working folder


GENERATORS = {
    "arithmetic": Generator(
        f"bigbench-{GENERATOR_VERSION}/bigbench/benchmark_tasks/arithmetic/generate_examples.py", None, False
    ),
    "object_counting": Generator(
        f"bigbench-{GENERATOR_VERSION}/bigbench/benchmark_tasks/object_counting/generate_task.py", 0, True
    ),
}
# What the scripts write on Python >= 3.11 (string hashing) with inflect 5.3.0, for the tasks frontier evaluates on:
# checked after generating, so a different draw is an error rather than a silently different test set.
GENERATED_SHA256 = {
    "arithmetic/1_digit_multiplication": "5777b0ad40b392d6d442d40384d3ef010f54c4836af2d8047b5d2b12630511e7",
    "arithmetic/2_digit_addition": "1dd3e6fd6bc325a0010b21cef74bd94321b991003715e7299eb0cbd29f1d5582",
    "arithmetic/2_digit_subtraction": "7437e2ef68b0725da20a4321c32251c828a7dc062c627da9e63409c1fb2653db",
    "object_counting": "7f2748b3e0e6d321f40bfbe19338b6bb5b8f4f04539b05e6ad227932e4b83cff",
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
    hint = (
        f"PyPI stopped serving it in 2026-12: set {SDIST_ENV} to a copy you have, or use load_generated_task for "
        f"the tasks BIG-bench generates ({', '.join(sorted(GENERATORS))})"
    )
    return _sdist(VERSION, SDIST_ENV, "358 MB", progress, hint)


def _sdist(
    version: str, env: str, size: str, progress: bool, hint: str | None = None, sha256: str | None = None
) -> Path:
    """$env if set (used as is), else the cached copy, else `pip download` into the cache; a cached or downloaded
    copy must match `sha256` when one is given. `hint` says what to do when the download fails."""
    name = f"bigbench-{version}.tar.gz"
    hint = hint or (
        f"download it yourself (`pip download bigbench=={version} --no-deps --no-binary :all:`) "
        f"and set {env} to the file"
    )
    if os.environ.get(env):
        path = Path(os.environ[env])
        if not path.is_file():
            raise ConfigError(f"{env}={path}: no such file; unset it or point it at {name}")
        return path
    cached = bigbench_cache_dir(version) / name
    if cached.is_file():
        _check_digest(cached, sha256)
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
                f"could not download {name} with pip ({result.stderr.strip().splitlines()[-1:]}); {hint}"
            )
        _check_digest(downloaded, sha256)
        os.replace(downloaded, cached)  # same folder, so the rename is atomic
    return cached


def _check_digest(path: Path, sha256: str | None) -> None:
    if sha256 is not None and hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise FrontierError(f"{path} does not match PyPI's sha256 {sha256}; delete it and run again to download it")


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
    generator = GENERATORS[family]
    sdist = _sdist(GENERATOR_VERSION, GENERATOR_SDIST_ENV, "358 KB", progress, sha256=GENERATOR_SDIST_SHA256)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tarfile.open(sdist, "r:gz") as archive:
                script_text = archive.extractfile(generator.script).read()
        except (tarfile.TarError, KeyError) as exc:
            raise ConfigError(
                f"{sdist}: not the bigbench {GENERATOR_VERSION} sdist (no readable {generator.script}: {exc}); "
                f"check or unset {GENERATOR_SDIST_ENV}"
            ) from None
        (Path(tmp) / "generate.py").write_bytes(script_text)
        prelude = "" if generator.seed is None else f"import random; random.seed({generator.seed}); "
        command = [sys.executable, "-c", f"{prelude}import runpy; runpy.run_path('generate.py', run_name='__main__')"]
        try:
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                    timeout=GENERATOR_TIMEOUT_S, env={**os.environ, "PYTHONHASHSEED": "0"})  # fmt: skip
        except subprocess.TimeoutExpired:
            raise FrontierError(f"BIG-bench's {generator.script} ran past {GENERATOR_TIMEOUT_S} s") from None
        if result.returncode != 0:
            fix = " (install it: pip install inflect==5.3.0)" if "No module named 'inflect'" in result.stderr else ""
            raise FrontierError(f"BIG-bench's {generator.script} failed{fix}: {result.stderr.strip()[-500:]}")
        if generator.prints_task:
            written = {family: result.stdout.encode()}
        else:
            written = {f"{family}/{path.parent.name}": path.read_bytes() for path in Path(tmp).glob("*/task.json")}
    for task, data in written.items():  # check everything before caching anything
        try:
            examples = json.loads(data)["examples"]
        except (ValueError, KeyError, TypeError):
            raise FrontierError(f"BIG-bench's {generator.script} wrote no task JSON for {task!r}") from None
        expected = GENERATED_SHA256.get(task)
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise FrontierError(
                f"BIG-bench's {generator.script} wrote a different {task!r} ({len(examples)} examples) than the one "
                "frontier evaluates on; it is reproduced by Python >= 3.11 with inflect==5.3.0"
            )
    for task, data in written.items():
        atomic_write_bytes(_generated_task_file(task), data)
    if name not in written:
        made = ", ".join(sorted(written)) or "nothing"
        raise ConfigError(f"BIG-bench's {family} generator writes no task {name!r}; it writes {made}")


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
