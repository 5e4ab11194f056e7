"""BIG-bench tasks read straight from the `bigbench==1.0.0` source distribution on PyPI (evaluation only).

The package itself is never installed (its dependencies are heavy): `pip download` fetches the 358 MB sdist once
into the frontier cache, and each requested task's task.json is extracted from it, atomically, on first use.
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


@dataclass(frozen=True)
class BigBenchExample:
    """input text and the accepted answers (for multiple-choice tasks: the choice(s) with the top score)."""

    input: str
    targets: tuple[str, ...]


def bigbench_cache_dir() -> Path:
    from frontier.models.loading import cache_root

    return cache_root() / f"bigbench-{VERSION}"


def _task_file(name: str) -> Path:
    return bigbench_cache_dir() / "tasks" / name.replace("/", "__") / "task.json"


def sdist_path(progress: bool = True) -> Path:
    """The sdist: $FRONTIER_BIGBENCH_SDIST, else the cached copy, else downloaded with pip into the cache."""
    if os.environ.get(SDIST_ENV):
        path = Path(os.environ[SDIST_ENV])
        if not path.is_file():
            raise ConfigError(f"{SDIST_ENV}={path}: no such file; unset it or point it at {SDIST_NAME}")
        return path
    cached = bigbench_cache_dir() / SDIST_NAME
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", f"bigbench=={VERSION}", "--no-deps",
                   "--no-binary", ":all:", "--dest", tmp, "--quiet"]  # fmt: skip
        if progress:
            print(f"downloading the BIG-bench sdist (358 MB, once) into {cached.parent}", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / SDIST_NAME
        if result.returncode != 0 or not downloaded.is_file():
            raise FrontierError(
                f"could not download {SDIST_NAME} with pip ({result.stderr.strip().splitlines()[-1:]}); "
                f"download it yourself (`pip download bigbench=={VERSION} --no-deps --no-binary :all:`) "
                f"and set {SDIST_ENV} to the file"
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
    """The examples of one task, in the file's order."""
    ensure_tasks([name], progress)
    data = json.loads(_task_file(name).read_text())
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
