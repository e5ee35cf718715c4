"""`Simulator`: the app served by hypercorn on 127.0.0.1 from a background thread with its own event loop.

Server choice: hypercorn for every mode. It is the one ASGI server here that speaks HTTP/2 (h2 via ALPN
over TLS, and h2c prior knowledge) while still accepting HTTP/1.1 clients on the same port, so one server
serves baseline and optimized clients. On plain HTTP/1.1 uvicorn (h11; httptools is not installed) is
somewhat faster: in benchmarks/simulator_rate.py runs on 2 shared, busy cores hypercorn reached 0.5-1.0x
uvicorn's rate (e.g. 1.5M vs 2.3M chunks/s Ollama, 0.7M vs 1.2M OpenAI), yet 3.5x-9x the 200k chunks/s
target, because the app batches up to 1024 pre-encoded chunks per ASGI send. Meeting the target with one
server beats two servers with two different abort/shutdown paths, so hypercorn serves every mode.
benchmarks/simulator_rate.py prints the current figures.

Abrupt closes (faults, shutdown) reach hypercorn's connection through the ASGI `send`
(see _hypercorn_adapter.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
from pathlib import Path

from workbench.simulator._served import Served
from workbench.simulator.app import SimApp
from workbench.simulator.groundtruth import GroundTruth, Ledger, ServerStats
from workbench.simulator.profile import Profile

__all__ = ["Simulator"]


class Simulator(Served):
    """A running simulator. Use as a context manager, or call start()/stop().

        with Simulator(Profile.instant()) as sim:
            httpx.post(sim.url + "/api/chat", json={...})
            sim.ground_truth("req-1")

    Several simulators may run in one process; each has its own thread, loop and port.
    """

    def __init__(
        self,
        profile: Profile | None = None,
        *,
        tls: bool = False,
        http2: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 10_000,
        control: bool = False,
        reuse_port: bool = False,
    ) -> None:
        self.profile = profile if profile is not None else Profile()
        self.tls = tls
        self.http2 = http2
        self.host = host
        self._port = port
        self._ledger = Ledger(history)
        self._app = SimApp(self.profile, self._ledger, control=control)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._halt: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._ca_path: str | None = None
        self._bound_port = 0
        # reuse_port: several processes serve one port (the kernel spreads connections over them), and each
        # also listens on a private port of its own, so its ground truth can be asked of it alone.
        self._reuse_port = reuse_port
        self._control_port = 0

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> Simulator:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # hypercorn sets this only on sockets it creates; without it Nagle could hold small chunks back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._port))
        sock.listen(1024)
        sock.setblocking(False)
        self._bound_port = sock.getsockname()[1]
        certfile = keyfile = None
        if self.tls:
            certfile, keyfile = self._make_certs()
        from hypercorn.config import Config

        config = Config()
        # The listening socket is ours (so port 0 is known before serving); hypercorn adopts its fd.
        config.bind = [f"fd://{sock.detach()}"]
        if self._reuse_port:
            private = socket.socket(sock.family, socket.SOCK_STREAM)
            private.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            private.bind((self.host, 0))
            private.listen(64)
            private.setblocking(False)
            self._control_port = private.getsockname()[1]
            config.bind.append(f"fd://{private.detach()}")
        config.graceful_timeout = 1.0
        config.keep_alive_timeout = 30.0
        config.include_server_header = False
        config.accesslog = None
        config.errorlog = "-"
        config.loglevel = "WARNING"
        if certfile is not None:
            config.certfile, config.keyfile = certfile, keyfile
        config.alpn_protocols = ["h2", "http/1.1"] if self.http2 else ["http/1.1"]
        self._thread = threading.Thread(
            target=self._run, args=(config,), name=f"sim:{self._bound_port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError(f"simulator did not start: {self._error!r}")
        return self

    def _make_certs(self) -> tuple[str, str]:
        import trustme

        self._tmp = tempfile.TemporaryDirectory(prefix="workbench-sim-")
        d = Path(self._tmp.name)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        cert.private_key_pem.write_to_path(str(d / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(d / "cert.pem"), append=True)
        self._ca_path = str(d / "ca.pem")
        return str(d / "cert.pem"), str(d / "key.pem")

    def _run(self, config: object) -> None:
        from hypercorn.asyncio import serve

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> None:
            self._halt = asyncio.Event()
            self._ready.set()
            await serve(self._app, config, shutdown_trigger=self._halt.wait)  # type: ignore[arg-type]

        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close open streams (no end marker), stop the server, join the thread. Safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._app.shutdown)
                if self._halt is not None:
                    loop.call_soon_threadsafe(self._halt.set)
        thread.join(timeout_s)
        self._thread = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    # ---- addresses ---------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._bound_port

    @property
    def url(self) -> str:
        if not self._bound_port:
            raise RuntimeError("simulator is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._bound_port}"

    @property
    def control_url(self) -> str:
        """This process's own address (reuse_port: the shared `url` may reach a sibling process)."""
        if not self._control_port:
            return self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._control_port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- ground truth ------------------------------------------------------------------------------------
    def ground_truth(self, request_id: str, *, wait_s: float = 2.0) -> GroundTruth:
        """What the server sent for `request_id` (the client's X-Request-Id header).

        Waits up to `wait_s` for the response to finish on the server side (the client may read the last
        byte a moment before the server's bookkeeping ends). KeyError if the id was never seen or has
        been evicted (only the newest `history` requests are kept).
        """
        self._ledger.wait(request_id, wait_s, disconnect=False)
        gt = self._ledger.get(request_id)
        if gt is None:
            raise KeyError(f"no ground truth for request id {request_id!r}")
        return gt

    def wait_disconnect(self, request_id: str, timeout_s: float = 5.0) -> bool:
        """True once the server saw the client drop `request_id` mid-response; False on timeout."""
        return self._ledger.wait(request_id, timeout_s, disconnect=True)

    def wait_finished(self, request_id: str, timeout_s: float = 5.0) -> bool:
        return self._ledger.wait(request_id, timeout_s, disconnect=False)

    def stats(self) -> ServerStats:
        return self._ledger.stats()
