"""pyproject.toml and environment.yml must list the same runtime dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# pip extras that conda spells as separate packages.
EXTRAS = {"httpx[http2]": {"httpx", "h2"}}
# conda-forge names that differ from PyPI's.
CONDA_ALIASES = {"redis-py": "redis"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ ;]", spec.strip(), maxsplit=1)[0].lower()


def _pyproject_names() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names: set[str] = set()
    for spec in deps:
        name = _name(spec)
        names |= EXTRAS.get(name, {re.sub(r"\[.*\]", "", name)})
    return names


def _conda_names() -> set[str]:
    names: set[str] = set()
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        item = line.strip()
        if in_deps and item.startswith("- ") and not item.startswith("- pip:"):
            name = _name(item[2:].split("#")[0])
            names.add(CONDA_ALIASES.get(name, name))
        elif in_deps and line and not line.startswith(" "):
            in_deps = False
    return names - {"python", "pip"}


def test_environment_yml_matches_pyproject() -> None:
    py, conda = _pyproject_names(), _conda_names()
    assert py == conda, f"only in pyproject: {sorted(py - conda)}; only in environment.yml: {sorted(conda - py)}"


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "workbench" / "py.typed").exists()
    assert "py.typed" in (ROOT / "pyproject.toml").read_text()


def test_environment_yml_names_every_extra() -> None:
    """Extras are pip-only; environment.yml lists each with its packages so conda users find them."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = (ROOT / "environment.yml").read_text()
    for extra, specs in extras.items():
        if extra == "dev":
            continue
        assert f"pip install -e '.[{extra}]'" in text, f"environment.yml does not name the {extra!r} extra"
        for spec in specs:
            assert re.sub(r"\[.*\]", "", _name(spec)) in text.lower(), f"{spec} ({extra}) missing in environment.yml"
