"""System components (redis-server, chromium) for tests: skip on a user's machine, fail under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, *candidates: str) -> str:
    """Path of a system binary. Missing: skip with the install hint, or fail under CI (nothing may skip)."""
    for cand in (name, *candidates):
        path = shutil.which(cand) or (cand if os.path.isabs(cand) and os.access(cand, os.X_OK) else None)
        if path:
            return path
    msg = f"{name} is not installed (Debian: sudo apt-get install {name})"
    if in_ci():
        pytest.fail(f"CI=true and {msg}; .ci/run must install it", pytrace=False)
    pytest.skip(msg)


def require_module(name: str, why: str) -> None:
    """Skip (or fail under CI) when an optional Python package is missing."""
    try:
        __import__(name)
    except ImportError:
        msg = f"optional package {name!r} is not installed ({why})"
        if in_ci():
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)
