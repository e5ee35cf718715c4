"""Fixtures for the real-kernel tests (the harness lives in kernel_harness.py, importable by name)."""

from kernel_harness import kernel

__all__ = ["kernel"]
