"""`workbench lab`: open JupyterLab on the notebooks, on loopback, with this Python's kernel.

The URL (with its token) is printed before the server starts, so it can be copied from a terminal. The token
never goes on a command line (``ps`` shows command lines to every user of the machine): JupyterLab gets it
through its environment (``JUPYTER_TOKEN``, see `lab_env`), and `workbench lab` takes it from
``$WORKBENCH_LAB_TOKEN``, ``$JUPYTER_TOKEN`` or ``--token-file``, else makes a random one.
`lab_command(...)` + `lab_env(...)` start the same server for tests that drive a real browser.

JupyterLab starts with "save widget state" on (`LAB_OVERRIDES`, given as app-settings overrides, so a
user's own setting still wins): a notebook saved there keeps its widgets' final state, e.g. the
Dashboard's lane texts, toggles and charts, and reopens showing them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "LAB_OVERRIDES",
    "default_notebook_dir",
    "free_port",
    "lab_command",
    "lab_env",
    "lab_settings_dir",
    "lab_url",
    "main",
]

#: JupyterLab settings `workbench lab` starts with (defaults: a user's own settings still win).
#: saveState: widget state goes into the saved notebook, so a Dashboard reopens with its final state.
LAB_OVERRIDES: dict[str, dict[str, object]] = {
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True}
}


def default_notebook_dir() -> Path:
    """`notebooks/` of a source checkout when there is one, else the current directory."""
    checkout = Path(__file__).resolve().parent.parent / "notebooks"
    return checkout if checkout.is_dir() else Path.cwd()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def lab_url(host: str, port: int, token: str, path: str = "lab") -> str:
    return f"http://{host}:{port}/{path}?token={token}"


def lab_env(token: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that hands JupyterLab its token (`base`: default this process's environment)."""
    env = dict(os.environ if base is None else base)
    env.pop("JUPYTER_TOKEN_FILE", None)  # JUPYTER_TOKEN wins anyway; one source is easier to reason about
    env["JUPYTER_TOKEN"] = token
    return env


def lab_settings_dir(folder: Path | None = None) -> Path:
    """A JupyterLab app-settings folder: the installed one's files (page_config.json, overrides) copied,
    with `LAB_OVERRIDES` merged into its overrides.json. Default folder: ~/.cache/workbench/lab-settings."""
    dest = folder or Path.home() / ".cache" / "workbench" / "lab-settings"
    commands = importlib.import_module("jupyterlab.commands")
    installed = Path(commands.get_app_dir()) / "settings"
    if installed.is_dir() and installed.resolve() != dest.resolve():
        shutil.copytree(installed, dest, dirs_exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "overrides.json"
    try:
        current = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        current = {}  # a broken file: JupyterLab would ignore it too
    if not isinstance(current, dict):
        current = {}
    for plugin, values in LAB_OVERRIDES.items():
        current.setdefault(plugin, {}).update(values)
    path.write_text(json.dumps(current, indent=2))
    return dest


def lab_command(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int,
    open_browser: bool = False,
    app_settings_dir: Path | None = None,
) -> list[str]:
    """`python -m jupyterlab` bound to `host:port`, serving `root`, kernels from this interpreter.
    `app_settings_dir`: a folder made by `lab_settings_dir` (widget state saved with notebooks).

    It carries no token: start it with ``env=lab_env(token)``."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        # A taken port should fail loudly, not silently move to a URL nobody printed.
        "--ServerApp.port_retries=0",
        # No update checks or news feed: nothing leaves the machine.
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
    ]
    if app_settings_dir is not None:
        cmd.append(f"--LabApp.app_settings_dir={app_settings_dir}")
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers often run as root; Jupyter refuses that unless told.
        cmd.append("--allow-root")
    return cmd


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="workbench lab", description="Open JupyterLab on the workbench notebooks."
    )
    p.add_argument("--dir", type=Path, default=None, help="folder to serve (default: notebooks/)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the access token (default: $WORKBENCH_LAB_TOKEN, $JUPYTER_TOKEN, or a random one)",
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    p.add_argument("--print-command", action="store_true", help="print the command and exit")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    root: Path = (args.dir or default_notebook_dir()).resolve()
    if not root.is_dir():
        print(f"workbench lab: no such folder: {root}", file=sys.stderr)
        return 2
    port = args.port or free_port(args.host)
    try:
        token = _token(args.token_file)
    except OSError as exc:
        print(f"workbench lab: cannot read the token file: {exc}", file=sys.stderr)
        return 2
    try:
        settings = lab_settings_dir()
    except OSError as exc:
        print(f"workbench lab: cannot write the JupyterLab settings folder: {exc}", file=sys.stderr)
        return 2
    cmd = lab_command(
        root, host=args.host, port=port, open_browser=not args.no_browser, app_settings_dir=settings
    )
    if args.print_command:
        print(" ".join(cmd))  # no token in it: it comes through the environment
        return 0
    print(f"JupyterLab on {root}\n  open: {lab_url(args.host, port, token)}\n  stop: Ctrl-C", flush=True)
    proc = subprocess.Popen(cmd, env=lab_env(token))
    # SIGTERM (a service manager, a test) stops JupyterLab too, as Ctrl-C does, instead of orphaning it
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        token = token_file.read_text().strip()
        if token:
            return token
    return os.environ.get("WORKBENCH_LAB_TOKEN") or os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(16)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
