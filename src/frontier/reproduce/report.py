"""Render stored experiment records as Markdown and HTML; both are pure functions of `results.json`."""

from __future__ import annotations

import base64
import html
import os
import platform
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from frontier.reproduce.registry import ExperimentResult, Verdict

VERDICT_MARK = {
    Verdict.PASS: "✅ pass",
    Verdict.FAIL: "❌ fail",
    Verdict.NOT_COMPARABLE: "➖ not comparable",
    Verdict.ERROR: "💥 error",
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    """The commit of the frontier checkout this code runs from, with `-dirty` if it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if commit.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"


def collect_environment() -> dict[str, Any]:
    """Facts a reader needs to compare our figures with theirs: hardware, threads, library versions, commit."""
    import numpy
    import torch
    import transformers

    import frontier

    return {
        "frontier": frontier.__version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.is_available(),
        "allocator": allocator_settings(),
    }


def allocator_settings() -> str:
    """The environment variables that change how freed memory is reused (glibc's MALLOC_*, a preloaded jemalloc or
    tcmalloc, PyTorch's CUDA allocator): timings of large tensors move with them (on a CPU, through page faults on
    memory handed back to the OS)."""
    names = sorted(
        name for name in os.environ if name.startswith("MALLOC_") or name in ("LD_PRELOAD", "PYTORCH_CUDA_ALLOC_CONF")
    )
    return ", ".join(f"{name}={os.environ[name]}" for name in names) or "default"


def _summary(results: list[ExperimentResult]) -> Counter:
    return Counter(row.verdict for result in results for row in result.rows)


def _escape_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(run: dict[str, Any], results: list[ExperimentResult]) -> str:
    counts = _summary(results)
    lines = [
        f"# frontier reproduce — {run['started']}",
        "",
        f"Mode `{run['mode']}`, seed {run['seed']}, {len(results)} experiment(s): "
        + ", ".join(f"{counts[v]} {v.value}" for v in Verdict),
        "",
        "## Environment",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {_escape_cell(value)} |" for key, value in run["environment"].items()]
    lines += [f"| resumed {r['at']} | at commit {_escape_cell(r['git_commit'])} |" for r in run.get("resumed", [])]
    for result in results:
        lines += [
            "",
            f"## {result.title} (`{result.name}`)",
            "",
            f"{result.seconds:.1f} s, mode {result.mode}{_other_commit(run, result)}",
            "",
        ]
        lines += ["| Claim | Measured | Verdict | Command |", "|---|---|---|---|"]
        for row in result.rows:
            claim = row.claim + (f" <br>_{row.source}_" if row.source else "")
            lines.append(
                f"| {_escape_cell(claim)} | {_escape_cell(row.measured)} | {VERDICT_MARK[row.verdict]} | "
                f"`{_escape_cell(row.command)}` |"
            )
        details = [row for row in result.rows if row.detail]
        for row in details:
            lines += [
                "",
                f"<details><summary>{row.claim}</summary>",
                "",
                "```",
                row.detail,
                "```",
                "</details>",
            ]
        for figure in result.figures:
            lines += ["", f"![{Path(figure).stem}]({figure})"]
    return "\n".join(lines) + "\n"


def _other_commit(run: dict[str, Any], result: ExperimentResult) -> str:
    """ ", computed at commit X" when a resumed run finished this experiment under other code than it started with."""
    if result.git_commit and result.git_commit != run["environment"].get("git_commit"):
        return f", computed at commit {result.git_commit}"
    return ""


def _image_tag(report_dir: Path, figure: str) -> str:
    """Embed the PNG as a data URI so index.html is one self-contained file."""
    data = base64.b64encode((report_dir / figure).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(figure).stem)}" src="data:image/png;base64,{data}">'


def render_html(run: dict[str, Any], results: list[ExperimentResult], report_dir: Path) -> str:
    counts = _summary(results)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>frontier reproduce — {esc(run['started'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;width:100%;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "vertical-align:top}th{background:#f3f3f3}code{font-size:90%}img{max-width:100%}"
        ".pass{color:#17692b}.fail{color:#a11}.error{color:#a11;font-weight:bold}.not-comparable{color:#666}"
        "</style></head><body>",
        f"<h1>frontier reproduce — {esc(run['started'])}</h1>",
        f"<p>Mode <code>{esc(run['mode'])}</code>, seed {run['seed']}, {len(results)} experiment(s): "
        + ", ".join(f"{counts[v]} {v.value}" for v in Verdict)
        + "</p>",
        "<h2>Environment</h2><table>",
    ]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in run["environment"].items()]
    parts += [
        f"<tr><th>resumed {esc(r['at'])}</th><td>at commit {esc(r['git_commit'])}</td></tr>"
        for r in run.get("resumed", [])
    ]
    parts.append("</table>")
    for result in results:
        parts.append(f"<h2>{esc(result.title)} (<code>{esc(result.name)}</code>)</h2>")
        parts.append(f"<p>{result.seconds:.1f} s, mode {esc(result.mode)}{esc(_other_commit(run, result))}</p>")
        parts.append("<table><tr><th>Claim</th><th>Measured</th><th>Verdict</th><th>Command</th></tr>")
        for row in result.rows:
            source = f"<br><small>{esc(row.source)}</small>" if row.source else ""
            detail = f"<details><summary>detail</summary><pre>{esc(row.detail)}</pre></details>" if row.detail else ""
            parts.append(
                f"<tr><td>{esc(row.claim)}{source}</td><td>{esc(row.measured)}{detail}</td>"
                f"<td class='{row.verdict.value}'>{esc(VERDICT_MARK[row.verdict])}</td>"
                f"<td><code>{esc(row.command)}</code></td></tr>"
            )
        parts.append("</table>")
        parts += [_image_tag(report_dir, figure) for figure in result.figures]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
