"""Comparison helpers for tests of a fast path against its reference (the bar fla's CONTRIBUTING sets)."""

from __future__ import annotations

import torch


def error_report(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    """(max absolute error, RMS-relative error ‖ref − out‖_rms / ‖ref‖_rms), computed in float64."""
    ref64, out64 = ref.detach().double(), out.detach().double()
    diff = ref64 - out64
    max_abs = diff.abs().max().item() if diff.numel() else 0.0
    rms_ref = ref64.pow(2).mean().sqrt().item() if ref64.numel() else 0.0
    rms_rel = diff.pow(2).mean().sqrt().item() / rms_ref if rms_ref > 0 else max_abs
    return max_abs, rms_rel


def _check_comparable(name: str, ref: torch.Tensor, out: torch.Tensor) -> None:
    if ref.shape != out.shape:
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError(f"{name}: non-finite values in the output")


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, atol: float) -> None:
    """Fail with the tensor's name, max-abs and RMS-relative error when they differ by more than `atol` anywhere."""
    _check_comparable(name, ref, out)
    max_abs, rms_rel = error_report(ref, out)
    if max_abs > atol:
        raise AssertionError(f"{name}: max abs error {max_abs:.3e} > {atol:.1e} (RMS-relative {rms_rel:.3e})")


def assert_rms_close(name: str, ref: torch.Tensor, out: torch.Tensor, ratio: float) -> None:
    """Fail when the RMS-relative error exceeds `ratio`: fla's bar for Triton kernels, whose fp32 matmuls round
    through TF32, so a max-abs bound would be set by the largest entries rather than by the kernel's accuracy."""
    _check_comparable(name, ref, out)
    max_abs, rms_rel = error_report(ref, out)
    if rms_rel > ratio:
        raise AssertionError(f"{name}: RMS-relative error {rms_rel:.3e} > {ratio:.0e} (max abs {max_abs:.3e})")
