"""Atomic file writes: write a temp file beside the target, fsync, then rename over it.

A reader (or a resumed run) sees either the old file or the complete new one, never a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, *, strict: bool = False) -> None:
    """Write `data` as JSON. Python's JSON (the default) keeps NaN and infinities, so our own files read back as they
    were written; `strict=True` writes them as null, for files other tools read (jq and browsers refuse NaN)."""
    data = _finite(data) if strict else data
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=not strict) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def atomic_symlink(target: str | os.PathLike, link: str | os.PathLike) -> None:
    """Point `link` at `target`, replacing any existing link in one rename."""
    link = Path(link)
    tmp = link.parent / f".{link.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temp folder beside `path`, then put it in `path`'s place: `path` is the old folder or the complete new
    one, never half-written. If the body raises, the temp folder is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name, so a leftover is told from another live writer's folder (see the cleanup).
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp creates 0700; results are meant to be read by others
        if path.exists() or path.is_symlink():
            old = path.parent / f".{path.name}.{os.getpid()}.old"
            _remove(old)
            os.replace(path, old)  # a crash between the two renames leaves the old folder here, not lost
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    leftover = re.compile(rf"\.{re.escape(path.name)}\.(\d+)(-[^.]+)?\.(tmp|old)")  # this path's folders only
    for stale in path.parent.iterdir():
        match = leftover.fullmatch(stale.name)
        if match and not _alive(int(match.group(1))):
            _remove(stale)  # left by a process killed mid-write; `path` is now complete


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs (another writer may be filling its temp folder right now)."""
    if pid == os.getpid():
        return False  # our own leftovers: this call's folders are already moved into place or removed
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
