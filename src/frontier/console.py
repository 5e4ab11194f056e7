"""Terminal output shared by the CLI and long-running library calls: progress bars on stderr."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

# stderr keeps stdout clean for generated text and machine-readable output.
stderr_console = Console(stderr=True)


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console,
        transient=transient,
    )


@contextmanager
def progress_steps(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A progress bar of `total` steps; the context yields a function that advances it by one."""
    if not enabled:
        yield lambda: None
        return
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


@contextmanager
def hf_progress_bars_off() -> Iterator[None]:
    """Silence transformers' per-file and per-tensor tqdm bars; callers show one rich bar per phase instead."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
