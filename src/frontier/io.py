"""Atomic file writes: write a temp file beside the target, fsync, then rename over it.

A reader (or a resumed run) sees either the old file or the complete new one, never a half-written file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
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


# Temp and old folders of `atomic_directory` carry their writer's host and pid, so a leftover of a killed writer is
# told from a folder another writer is still filling; the folders this process is working in right now (several
# threads may write at once) are listed here.
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]  # names this host in temp folder names
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()
LEGACY_LEFTOVER_AGE_S = 24 * 3600  # leftovers named before writers were recorded: removed once this old


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temp folder beside `path`, then put it in `path`'s place: `path` is the old folder or the complete new
    one, never half-written. If the body raises, the temp folder is removed and `path` is left as it was. Leftovers
    of writers killed mid-write (on this host) are removed afterwards."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = f"{HOST_TAG}-{os.getpid()}"
    with _ACTIVE_LOCK:  # listed before another thread's cleanup can see it
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{writer}-", suffix=".tmp", dir=path.parent))
        old = path.parent / f"{tmp.name.removesuffix('.tmp')}.old"
        _ACTIVE.update((tmp.name, old.name))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp creates 0700; results are meant to be read by others
        if path.exists() or path.is_symlink():
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
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.difference_update((tmp.name, old.name))
    _remove_leftovers(path)


def _remove_leftovers(path: Path) -> None:
    """Remove this path's temp and old folders whose writer is gone: a dead process on this host, or this process
    when it no longer works in them; folders of other hosts are left alone."""
    name = re.escape(path.name)
    recorded = re.compile(rf"\.{name}\.([0-9a-f]{{12}})-(\d+)-[^.]+\.(tmp|old)")
    legacy = re.compile(rf"\.{name}\.[^.]+\.(tmp|old)")  # named before writers were recorded
    for stale in path.parent.iterdir():
        try:  # best effort: `path` is already complete, and another writer may clear the same leftover
            match = recorded.fullmatch(stale.name)
            if match:
                host, pid = match.group(1), int(match.group(2))
                if host == HOST_TAG and not _writing(pid, stale.name):
                    _remove(stale)
            elif legacy.fullmatch(stale.name) and time.time() - stale.stat().st_mtime > LEGACY_LEFTOVER_AGE_S:
                _remove(stale)
        except OSError:
            continue


def _writing(pid: int, name: str) -> bool:
    """Whether the process `pid` of this host may still be writing the folder `name`."""
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return name in _ACTIVE
    return process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = True) -> Iterator[None]:
    """An exclusive advisory lock on the file `path` (created if missing) for the block. The kernel drops it when its
    holder dies, so it never goes stale. With `wait=False` a lock held by another process raises BlockingIOError."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
