"""Kimi Delta Attention on a CUDA GPU: what `frontier.kda.chunk_kda` dispatches to there (fla's Triton kernel) against
our PyTorch `chunk_kda` run on the same GPU, fla's naive chunk reference and causal softmax attention (SDPA).

    python benchmarks/kda_cuda.py                 # needs CUDA and flash-linear-attention; writes results/kda_cuda.*

The CPU benchmark (`frontier reproduce --only kda-op-throughput`) holds issue 3's targets; this one checks the GPU
path the library takes and how much slower the PyTorch path would be there. Shapes as there: B=1, H=4, K=V=64,
fp32, inputs drawn as fla's tests draw them. Each time is the median of `--repeats` calls after warm-up calls,
timed with the GPU synchronised before and after; the RMS-relative gap of each KDA op's output to fla's kernel is
recorded beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F

from frontier.io import atomic_write_json
from frontier.kda import chunk as torch_chunk
from frontier.kda import dispatch
from frontier.reproduce.plots import line_chart
from frontier.testing import error_report

RESULTS = Path(__file__).resolve().parent.parent / "results"
BATCH, HEADS, HEAD_DIM = 1, 4, 64
LENGTHS = [1024, 4096, 16384, 65536]
DEVICE = "cuda"
KERNEL, OURS, SDPA = "fla chunk_kda (Triton)", "frontier chunk_kda (PyTorch)", "SDPA causal"


def kda_ops() -> dict[str, Callable[[dict], torch.Tensor]]:
    """Each op maps the inputs to o as [B, T, H, V]."""
    fla_naive = dispatch.load_fla_naive().naive_chunk_kda
    return {
        KERNEL: lambda x: dispatch.chunk_kda(x["q"], x["k"], x["v"], x["g"], x["beta"])[0],
        OURS: lambda x: torch_chunk.chunk_kda(x["q"], x["k"], x["v"], x["g"], x["beta"])[0],
        "fla naive_chunk_kda": lambda x: fla_naive(x["q"], x["k"], x["v"], x["g"], x["beta"])[0],
        SDPA: lambda x: F.scaled_dot_product_attention(x["qh"], x["kh"], x["vh"], is_causal=True).transpose(1, 2),
    }


def make_inputs(length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator(DEVICE).manual_seed(seed)
    shape = (BATCH, length, HEADS, HEAD_DIM)
    q, k = (F.normalize(torch.rand(shape, device=DEVICE, generator=gen), dim=-1) for _ in range(2))
    x = {
        "q": q,
        "k": k,
        "v": torch.randn(shape, device=DEVICE, generator=gen),
        "g": F.logsigmoid(torch.randn(shape, device=DEVICE, generator=gen)),
        "beta": torch.sigmoid(torch.randn(BATCH, length, HEADS, device=DEVICE, generator=gen)),
    }
    x.update({f"{name}h": x[name].transpose(1, 2).contiguous() for name in ("q", "k", "v")})
    x["grad_out"] = torch.randn(shape, device=DEVICE, generator=gen)
    for value in x.values():
        value.requires_grad_()
    return x


def time_ms(call: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()  # kernels run asynchronously: the call is done when the GPU is
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(ops: dict[str, Callable], length: int, warmup: int, repeats: int) -> dict:
    x = make_inputs(length)

    def forward(op):
        with torch.no_grad():
            return op(x)

    def forward_backward(op):
        op(x).backward(x["grad_out"])

    row: dict = {"length": length, "forward_ms": {}, "forward_backward_ms": {}, "rms_gap_to_kernel": {}}
    with torch.no_grad():
        kernel_out = ops[KERNEL](x)
    for name, op in ops.items():
        print(f"  T={length} {name}", flush=True)
        row["forward_ms"][name] = time_ms(lambda op=op: forward(op), warmup, repeats)
        row["forward_backward_ms"][name] = time_ms(lambda op=op: forward_backward(op), warmup, repeats)
        if name != SDPA:
            row["rms_gap_to_kernel"][name] = error_report(kernel_out, forward(op))[1]
    return row


def write_report(args: argparse.Namespace, ops: dict, rows: list[dict]) -> None:
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "flash-linear-attention": version("flash-linear-attention"),
        "triton": version("triton"),
        "shape": {"batch": BATCH, "heads": HEADS, "head_dim": HEAD_DIM, "dtype": "float32"},
        "timing": f"median of {args.repeats} synchronised calls after {args.warmup} warm-up calls",
        "rows": rows,
        "pytorch_path_slowdown": {
            str(r["length"]): {
                "forward": r["forward_ms"][OURS] / r["forward_ms"][KERNEL],
                "forward_backward": r["forward_backward_ms"][OURS] / r["forward_backward_ms"][KERNEL],
            }
            for r in rows
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, report)
    lengths = [r["length"] for r in rows]
    panels = {
        title: {name: (lengths, [r[key][name] for r in rows]) for name in ops}
        for title, key in (("forward", "forward_ms"), ("forward + backward", "forward_backward_ms"))
    }
    line_chart(args.output.with_suffix(".png"), panels, "sequence length T", "ms", f"KDA on {report['device']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output", type=Path, default=RESULTS / "kda_cuda.json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or not dispatch.fla_triton_installed():
        print(
            "error: needs a CUDA GPU with flash-linear-attention and triton: pip install flash-linear-attention",
            file=sys.stderr,
        )
        return 2
    ops = kda_ops()
    rows = []
    for length in args.lengths:
        rows.append(measure(ops, length, args.warmup, args.repeats))
        fwd, both = rows[-1]["forward_ms"], rows[-1]["forward_backward_ms"]
        print(f"T={length}: " + "; ".join(f"{n} {fwd[n]:.2f} / {both[n]:.2f} ms" for n in ops), flush=True)
        write_report(args, ops, rows)  # after every length: a run cut short keeps what it measured
    print(f"wrote {args.output} and {args.output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
