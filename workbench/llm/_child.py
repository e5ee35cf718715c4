"""Runs ``python -m llama_cpp.server ARGS`` and exits when the parent closes our stdin (or dies).

`LlamaServer` starts the server through this module rather than directly so a crashed or killed parent
(a notebook kernel, a pytest run stopped by timeout) never leaves a 250 MB model server behind on a port.
Everything after the module name is passed to llama_cpp.server unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading


def _exit_when_parent_goes() -> None:
    # os.read on the raw descriptor: a thread blocked inside sys.stdin's buffered reader holds its lock and
    # aborts interpreter shutdown ("could not acquire lock ... at interpreter shutdown").
    try:
        while os.read(0, 65536):
            pass
    finally:
        # os._exit, not sys.exit: uvicorn would wait for open streams to finish, and the parent is gone.
        os._exit(0)


def main() -> None:
    threading.Thread(target=_exit_when_parent_goes, name="parent-watch", daemon=True).start()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
