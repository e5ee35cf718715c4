from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from workbench.llm import LlamaServer

# tests/ helpers (tests/_system.py) import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Under WORKBENCH_REQUIRE_EXTRAS=1 (.ci/run's extras step) any skip is a failure: a skipped extras test
    would pass the step without testing anything."""
    outcome = yield
    report = outcome.get_result()
    from _system import extras_required

    if report.skipped and extras_required() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but WORKBENCH_REQUIRE_EXTRAS=1 forbids skips: {reason}"


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """The real llama.cpp server (llm extra) with the bundled Gemma 3 270M, started once per test session.

    Skips without the extra (fails under WORKBENCH_REQUIRE_EXTRAS=1). The GGUF is assembled once into the
    user cache folder (WORKBENCH_CACHE_DIR overrides it). Mark tests using it `@pytest.mark.extras`.
    """
    from _system import require_extra

    from workbench.llm.model import LLM_MODULES

    require_extra("llm", *LLM_MODULES)
    from workbench.llm import LlamaServer

    with LlamaServer() as server:
        yield server
