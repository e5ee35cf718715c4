"""`workbench lab`: open JupyterLab on the notebooks, on loopback, with this Python's kernel.

The URL (with its token) is printed before the server starts, so it can be copied from a terminal or a log.
`lab_command(...)` builds the same command line for tests that drive a real browser.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["default_notebook_dir", "free_port", "lab_command", "lab_url", "main"]


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


def lab_command(
    root: Path, *, host: str = "127.0.0.1", port: int, token: str, open_browser: bool = False
) -> list[str]:
    """`python -m jupyterlab` bound to `host:port`, serving `root`, kernels from this interpreter."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        # A taken port should fail loudly, not silently move to a URL nobody printed.
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        # No update checks or news feed: nothing leaves the machine.
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
    ]
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
    p.add_argument("--token", default=None, help="access token (default: a random one)")
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
    token = args.token or secrets.token_hex(16)
    cmd = lab_command(root, host=args.host, port=port, token=token, open_browser=not args.no_browser)
    if args.print_command:
        print(" ".join(cmd))
        return 0
    print(f"JupyterLab on {root}\n  open: {lab_url(args.host, port, token)}\n  stop: Ctrl-C", flush=True)
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
