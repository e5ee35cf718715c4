"""System components (redis-server, chromium) for tests: skip on a user's machine, fail under CI=true.

Optional extras (`minilm`, `llm`) are different: `make test` must pass without them, also under CI=true, so
`require_extra` skips with the install command, and fails only when WORKBENCH_REQUIRE_EXTRAS=1 (set by the
extras step of .ci/run, which installs them first and runs `pytest -m extras`).
"""

from __future__ import annotations

import importlib.util
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


def extras_required() -> bool:
    return os.environ.get("WORKBENCH_REQUIRE_EXTRAS", "").lower() in ("1", "true", "yes")


def require_extra(extra: str, *modules: str) -> None:
    """Skip (or fail under WORKBENCH_REQUIRE_EXTRAS=1) when a module of an optional extra is missing.

    Mark such tests `@pytest.mark.extras` so the extras step of .ci/run selects them.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    msg = f"optional extra [{extra}] is not installed (missing {', '.join(missing)}; pip install -e '.[{extra}]')"
    if extras_required():
        pytest.fail(f"WORKBENCH_REQUIRE_EXTRAS=1 and {msg}", pytrace=False)
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
