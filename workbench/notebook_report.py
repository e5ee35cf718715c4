"""`workbench report NOTEBOOK`: execute a notebook headless and export it as HTML that needs no network.

The kernel is the running interpreter's own ipykernel (`sys.executable -m ipykernel_launcher`), so a report
always runs against the workbench it was launched from, whatever kernelspecs the machine has.

Widgets do not survive nbconvert (an exported page has no kernel and no widget manager), so notebooks end with
static renders (vl-convert SVG/PNG, Markdown) that carry the content. The HTML is made self-contained:
images embedded, widget state dropped (its renderer would load from a CDN), and any `<script src>` or
stylesheet that points off the machine removed, so the page renders the same with no network.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["execute_notebook", "export_html", "external_urls", "main", "slim_widget_state", "strip_external"]

# Tags that make a browser fetch from another host: <script src=//...>, <link href=//...>.
_EXTERNAL_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>", re.IGNORECASE | re.DOTALL
)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)
_REMOTE_IMPORT = re.compile(
    r"<script\b[^>]*>(?:(?!</script>).)*?\bimport\s*\(\s*[\"'](?:https?:)?//(?:(?!</script>).)*?</script>",
    re.IGNORECASE | re.DOTALL,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXTERNAL_REF = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?((?:https?:)?//[^\"' >]+)", re.IGNORECASE
)


def kernel_manager() -> Any:
    """A KernelManager for "python3" that runs this interpreter, never another python on PATH."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    spec = km.kernel_spec
    if spec is None:  # pragma: no cover - jupyter_client always provides the native kernel
        raise RuntimeError("no python3 kernelspec; install ipykernel in this environment")
    spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    return km


def execute_notebook(nb: Any, *, cwd: Path, timeout: float = 600.0, allow_errors: bool = False) -> Any:
    """Run every cell in place (nbclient); raises nbclient's CellExecutionError on the first failing cell."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        km=kernel_manager(),
        timeout=int(timeout),
        startup_timeout=120,
        allow_errors=allow_errors,
        record_timing=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def external_urls(html: str) -> list[str]:
    """URLs the page would fetch from another host (scripts, stylesheets, images, frames)."""
    return _EXTERNAL_REF.findall(html)


def strip_external(html: str) -> str:
    """Remove tags that load scripts or stylesheets from another host (require.js, MathJax, widget CDN),
    and inline scripts that would `import()` a module from one (nbconvert's mermaid loader)."""
    html = _EXTERNAL_SCRIPT.sub("", html)
    html = _REMOTE_IMPORT.sub("", html)
    return _EXTERNAL_LINK.sub("", html)


def slim_widget_state(nb: Any, max_bytes: int = 256_000) -> list[str]:
    """Drop saved widget models larger than `max_bytes` (an offline JupyterChart carries a 0.9 MB copy of
    vega in its state). Small models, such as a StreamView's final text, are kept. Returns dropped ids."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = state.get("state", {})
    dropped = [mid for mid, model in models.items() if len(json.dumps(model)) > max_bytes]
    for mid in dropped:
        del models[mid]
    return dropped


def export_html(nb: Any) -> str:
    """Offline HTML of an (executed) notebook: images inline, widget state dropped, no external loads."""
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    exporter = HTMLExporter(template_name="lab", embed_images=True)  # type: ignore[no-untyped-call]
    html, _ = exporter.from_notebook_node(nb)
    return strip_external(html)


def _cell_errors(nb: Any) -> list[str]:
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return errors


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="workbench report",
        description="Execute a notebook with this Python's kernel and export offline HTML.",
    )
    p.add_argument("notebook", type=Path, help="the .ipynb to run")
    p.add_argument("-o", "--output", type=Path, help="HTML file to write (default: NOTEBOOK with .html)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per cell (default 600)")
    p.add_argument("--executed", type=Path, help="also write the executed notebook here")
    p.add_argument("--inplace", action="store_true", help="save the executed notebook over NOTEBOOK")
    p.add_argument("--allow-errors", action="store_true", help="keep going after a failing cell")
    p.add_argument(
        "--keep-widget-state",
        action="store_true",
        help="save large widget models (offline chart bundles, ~1 MB each) in the executed notebook",
    )
    p.add_argument("--no-execute", action="store_true", help="export the saved outputs without running")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    import nbformat

    src: Path = args.notebook
    if not src.is_file():
        print(f"workbench report: no such notebook: {src}", file=sys.stderr)
        return 2
    out: Path = args.output or src.with_suffix(".html")
    nb = nbformat.read(src, as_version=4)  # type: ignore[no-untyped-call]
    failed: str | None = None
    started = time.perf_counter()
    if not args.no_execute:
        from nbclient.exceptions import CellExecutionError

        try:
            execute_notebook(
                nb, cwd=src.resolve().parent, timeout=args.timeout, allow_errors=args.allow_errors
            )
        except CellExecutionError as exc:
            text = _ANSI.sub("", str(exc)).strip()
            failed = text.splitlines()[-1] if text else type(exc).__name__
    took = time.perf_counter() - started
    targets: list[Path] = ([src] if args.inplace and failed is None else []) + (
        [args.executed] if args.executed else []
    )
    if targets and not args.keep_widget_state:
        dropped = slim_widget_state(nb)
        if dropped:
            print(
                f"dropped {len(dropped)} large widget model(s) from the saved notebook (--keep-widget-state)"
            )
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)  # type: ignore[no-untyped-call]
    out.parent.mkdir(parents=True, exist_ok=True)
    html = export_html(nb)
    out.write_text(html, encoding="utf-8")
    print(f"wrote {out} ({len(html) / 1024:.0f} KiB) after running {src.name} in {took:.1f} s")
    for target in targets:
        print(f"wrote executed notebook {target}")
    if failed is not None:
        print(f"workbench report: a cell failed: {failed}", file=sys.stderr)
        return 1
    errors = _cell_errors(nb)
    if errors and not args.allow_errors:
        print("workbench report: cells with errors:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
