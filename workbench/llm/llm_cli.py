"""`workbench llm`: serve the bundled Gemma 3 270M with llama.cpp on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading

from workbench._exceptions import ConfigError
from workbench.llm.model import INSTALL_HINT, MODEL_ALIAS, llm_extra_missing
from workbench.llm.server import LlamaServer, LlamaServerError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="workbench llm",
        description="Serve a real LLM (Gemma 3 270M, llama.cpp, OpenAI protocol /v1/*) on this machine. "
        "Needs the llm extra: pip install -e '.[llm]'.",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (default: 8000, llama.cpp's)")
    ap.add_argument("--model", default=None, metavar="GGUF", help="serve this GGUF instead of Gemma 3 270M")
    ap.add_argument("--alias", default=MODEL_ALIAS, help=f"model name the server answers to ({MODEL_ALIAS})")
    ap.add_argument(
        "--chat-format",
        default="gemma",
        help="llama.cpp chat format (default gemma: the bundled GGUF has no chat template of its own)",
    )
    ap.add_argument(
        "--cache-dir", default=None, help="where the GGUF is assembled (default: ~/.cache/workbench)"
    )
    ap.add_argument("--n-ctx", type=int, default=2048, help="context size in tokens (default 2048)")
    ap.add_argument("--threads", type=int, default=None, help="generation threads (default: half the cores)")
    ap.add_argument("--verbose", action="store_true", help="print llama.cpp's own log when the server stops")
    return ap


def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    missing = llm_extra_missing()
    if missing:
        print(f"workbench llm: the llm extra is not installed (missing: {', '.join(missing)}).")
        print(INSTALL_HINT[0].upper() + INSTALL_HINT[1:])
        return 2
    server = LlamaServer(
        ns.model,
        cache_dir=ns.cache_dir,
        host=ns.host,
        port=ns.port,
        alias=ns.alias,
        chat_format=ns.chat_format,
        n_ctx=ns.n_ctx,
        n_threads=ns.threads,
        verbose=ns.verbose,
    )
    print("workbench llm: assembling the model (once) and starting llama.cpp ...", flush=True)
    try:
        server.start()
    except (ConfigError, LlamaServerError) as exc:
        print(f"workbench llm: {exc}")
        return 1
    print(f"llama.cpp server (llama-cpp-python {server.version}) listening on {server.url}")
    print(f"  model {server.model!r} from {server.model_path}; started in {server.startup_s or 0:.1f} s")
    print(f"  OpenAI protocol: {server.url}/v1/chat/completions, /v1/completions, /v1/models")
    print(f"  try: workbench bench --url {server.url} --model {server.model}")
    print("Ctrl-C to stop", flush=True)
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    died = False
    try:
        while not done.wait(0.5):
            if not server.running:
                died = True
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        # A second Ctrl-C while stopping would leave the log file behind; stopping takes milliseconds.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        tail = server.log_tail() if (died or ns.verbose) else ""
        server.stop()
    if tail:
        print(tail.rstrip())
    if died:
        print("workbench llm: the llama.cpp server exited on its own (its last output is above)")
        return 1
    print("llama.cpp server stopped")
    return 0
