"""`workbench` command line: serve | llm | demo | bench | record | compare | report | lab.

Each subcommand lives beside the code it drives and exposes `main(argv) -> int`; this module only
dispatches, importing lazily so `workbench serve` does not pay for polars or altair.
"""

from __future__ import annotations

import importlib
import sys

_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "workbench.simulator.serve_cli",
        "run the embedded simulator on a port (Ollama + OpenAI protocols)",
    ),
    "llm": (
        "workbench.llm.llm_cli",
        "serve a real LLM (Gemma 3 270M, llama.cpp) on a port; needs the llm extra",
    ),
    "demo": ("workbench.demos.transport", "stream prompts from the simulator with and without optimizations"),
    "bench": (
        "workbench.experiments.bench_cli",
        "run an A/B or ablation benchmark and write results + report",
    ),
    "record": ("workbench.experiments.record", "record a server's timing per request into a trace to replay"),
    "compare": ("workbench.experiments.compare_cli", "compare two saved result files"),
    "report": ("workbench.notebook_report", "execute a notebook and export it as offline HTML"),
    "lab": ("workbench.lab", "open JupyterLab on the notebooks"),
}


def _usage() -> str:
    lines = ["usage: workbench COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in _COMMANDS.items()]
    lines += ["", "Run `workbench COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0 if args else 2)
    name, rest = args[0], args[1:]
    if name not in _COMMANDS:
        print(f"workbench: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(_COMMANDS[name][0])
    raise SystemExit(module.main(rest))


if __name__ == "__main__":
    main()
