"""I/O-free logic shared by the sync and async clients: their common base (toggles into parts, the
engine spec, the request to send), URLs, headers, probes, and the ONE place where httpx errors become
workbench errors (`map_error`, used by the network sources).
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, Literal, TypeVar

import httpx
import orjson

from workbench import variant
from workbench._exceptions import (
    EXCERPT_CHARS,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    IdleTimeout,
    StatusError,
    TransportError,
    TruncatedStreamError,
    WorkbenchError,
    http_status_error,
)
from workbench._types import Backend, ProtocolName, Request, Timeouts
from workbench.cache import CacheGate, ResponseCache, backend_identity, follower_timeout
from workbench.client._trace import ConnectionTrace
from workbench.optimizations import Optimizations
from workbench.protocols import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_EVENT_BYTES,
    ContentDecoder,
    build_request,
    check_content_type,
    decoder_for,
    parse_error_body,
)
from workbench.stream import EngineSpec, Starter, StreamEngine

__all__ = [
    "ERROR_BODY_LIMIT",
    "MODEL_PATHS",
    "PROBES",
    "ClientBase",
    "Phase",
    "Probe",
    "SourceBase",
    "as_backend",
    "base_url",
    "httpx_timeout",
    "map_error",
    "models_from_response",
    "parse_models",
    "pick_model",
    "pool_limits",
    "probe_result",
    "request_headers",
    "response_error",
    "ssl_context",
    "status_error",
    "url_for",
]

ERROR_BODY_LIMIT = 64 * 1024
Phase = Literal["connect", "response", "body"]


def as_backend(backend: Backend | str) -> Backend:
    return Backend(backend) if isinstance(backend, str) else backend


def base_url(backend: Backend) -> str:
    """The server root. A trailing `/v1` is accepted (OpenAI-style base URLs, Ollama's /v1) and removed,
    because every path we send starts with `/api/` or `/v1/`."""
    url = backend.url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def url_for(backend: Backend, path: str) -> str:
    return base_url(backend) + path


def request_headers(
    backend: Backend, request_id: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Accept-Encoding": ACCEPT_ENCODING,  # what `decoder_for` decodes (httpx would add br if installed)
        "Content-Type": "application/json",
    }
    if request_id:
        headers["X-Request-Id"] = request_id
    if extra:
        headers.update(extra)
    headers.update(backend.auth_headers())  # api_key (Bearer) or URL credentials (Basic)
    return headers


def ssl_context(verify: bool | str, *, http2: bool = False) -> ssl.SSLContext | bool:
    """The TLS context for `verify` (True: httpx's default CAs; a path: that CA file; False: no checks).

    Built once per process per (CA, HTTP version) and shared: loading a CA bundle costs ~20 ms of CPU, and a
    client made per request (`connection_pool` off) would pay it on every request, blocking the async
    client's event loop and delaying every other stream's stamps (measured: 100 loads took 2.0 s of a 16-
    stream bench run). The connection and its TLS handshake stay per request, as the baseline promises.
    Keyed by HTTP version too, because httpcore sets the context's ALPN protocols from it."""
    if verify is False:
        return False
    return _shared_context(verify if isinstance(verify, str) else None, http2)


@functools.lru_cache(maxsize=16)
def _shared_context(cafile: str | None, http2: bool) -> ssl.SSLContext:
    del http2  # only part of the key
    # httpx 0.28 deprecates `verify=<path>`: a CA path becomes an SSLContext here
    return ssl.create_default_context(cafile=cafile) if cafile else httpx.create_ssl_context()


def pool_limits(*, fast: bool = False) -> httpx.Limits:
    """Keep idle connections long enough to be reused across a notebook's requests.

    httpx's own pool (the sync client, and HTTP/2): at most 100 connections. Measured with
    benchmarks/concurrency_sweep.py, httpcore's pool costs CPU per connection per event (every assignment
    scans every connection), and 128-256 uncapped streams saturated the client's event loop. `fast`: the
    async client's HTTP/1.1 transport (`_h11_transport`, an O(1) pool) takes 1,024. Requests beyond the cap
    wait for a connection after the send stamp; the experiments runner warns when a run can exceed it
    (`pool_warning`). Keep-alive covers every connection the pool may open, so a wave of streams ending
    together does not close connections the next wave needs."""
    n = 1024 if fast else 100
    return httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=30.0)


def httpx_timeout(timeouts: Timeouts) -> httpx.Timeout:
    """httpx enforces only the connect limit; reads are bounded by our deadlines (first token, idle, total),
    which move while the stream runs, something httpx's fixed per-read timeout cannot express."""
    return httpx.Timeout(connect=timeouts.connect, read=None, write=timeouts.connect, pool=timeouts.total)


# ---- protocol auto-detection ----

PROBES: tuple[tuple[ProtocolName, str], ...] = (("ollama", "/api/version"), ("openai", "/v1/models"))


def probe_result(protocol: ProtocolName, status: int, body: bytes) -> bool:
    if status != 200:
        return False
    text = body[:4096].lstrip()
    if protocol == "ollama":
        return text.startswith(b"{") and b'"version"' in text
    return text.startswith(b"{") and b'"data"' in text


# ---- model listing ----

MODEL_PATHS: dict[ProtocolName, str] = {"ollama": "/api/tags", "openai": "/v1/models"}


def models_from_response(protocol: ProtocolName, resp: httpx.Response, url: str) -> list[str]:
    """The answer to a model listing (GET MODEL_PATHS[protocol]): its names, or the StatusError it earned.
    One place for both clients, which differ only in how they send the GET."""
    if resp.status_code != 200:
        raise status_error(
            resp.status_code,
            resp.content,
            method="GET",
            url=url,
            retry_after=resp.headers.get("retry-after"),
        )
    return parse_models(protocol, resp.content, url)


def parse_models(protocol: ProtocolName, body: bytes, url: str) -> list[str]:
    """Model names, in the server's order, from Ollama's `{"models": [{"name": ...}]}` or OpenAI's
    `{"data": [{"id": ...}]}`. Raises ConfigError when the answer is not such a list or lists none."""
    key, field = ("models", ("name", "model")) if protocol == "ollama" else ("data", ("id",))
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    entries = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(
            f"GET {url} did not answer with a model list ({key!r} missing): {parse_error_body(body, 120)!r}",
            hint="check the URL and --protocol, or name the model yourself (--model / Request(model=...))",
        )
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            name = next((entry[f] for f in field if isinstance(entry.get(f), str) and entry[f]), None)
            if name is not None:
                names.append(name)
    if not names:
        raise ConfigError(
            f"GET {url} lists no models: the server has none loaded or pulled",
            hint="pull or load a model on the server (e.g. `ollama pull llama3.2`), or name the model "
            "yourself (--model / Request(model=...))",
        )
    return names


def pick_model(names: list[str]) -> str:
    """The model used when none is named: the first the server lists, passing over embedding models
    (a name with "embed" in it), which cannot chat; the first of all if every one is such."""
    return next((n for n in names if "embed" not in n.lower()), names[0])


class Probe:
    """Protocol detection without I/O (GET /api/version, then /v1/models, or the other way round for a
    `/v1` URL): `path` is the next GET (None once decided), `answer(...)` takes its response or error."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._probes = list(PROBES[::-1] if backend.url.rstrip("/").endswith("/v1") else PROBES)
        self._seen: list[str] = []
        self._found: ProtocolName | None = None

    @property
    def path(self) -> str | None:
        return None if self._found is not None or not self._probes else self._probes[0][1]

    def answer(self, got: httpx.Response | WorkbenchError) -> None:
        proto, path = self._probes.pop(0)
        if isinstance(got, ConnectError | ConnectTimeout):
            raise got  # the server is down: no other probe can tell more
        if isinstance(got, WorkbenchError):  # a probe that fails says "not this protocol"
            self._seen.append(f"GET {path}: {got.message}")
        elif probe_result(proto, got.status_code, got.content):
            self._found = proto
        else:
            self._seen.append(f"GET {path} -> HTTP {got.status_code}")

    def result(self) -> ProtocolName:
        if self._found is None:
            raise ConfigError(
                f"could not tell which protocol {base_url(self.backend)} speaks ({'; '.join(self._seen)})",
                hint="check the URL (the server root), or name the protocol: --protocol openai or ollama "
                "(Backend(url, protocol='openai'))",
            )
        return self._found


# ---- the error boundary ----


def map_error(exc: BaseException, *, url: str, phase: Phase, timeouts: Timeouts) -> WorkbenchError:
    """Every httpx / OS error becomes one workbench error here, with a message that says what to do."""
    if isinstance(exc, WorkbenchError):
        return exc
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(f"connecting to {url} took longer than {timeouts.connect} s")
    if isinstance(exc, httpx.PoolTimeout):
        return ConnectTimeout(f"no free connection to {url} within {timeouts.total} s")
    if isinstance(exc, httpx.ConnectError):
        if "CERTIFICATE" in detail.upper() or "SSL" in detail.upper():
            return ConnectError(
                f"TLS handshake with {url} failed: {detail}",
                hint="pass Backend(url, verify='/path/to/ca.pem') for a private CA, or check the certificate",
            )
        return ConnectError(f"could not connect to {url}: {detail}, is the server running?")
    if isinstance(exc, httpx.TimeoutException):
        return IdleTimeout(f"{url}: {detail}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigError(f"bad URL {url}: {detail}")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        if phase == "body":
            return TruncatedStreamError(f"the connection to {url} broke before the stream ended: {detail}")
        return TransportError(f"{url} closed the connection before answering: {detail}")
    if isinstance(exc, httpx.HTTPError | OSError):
        return TransportError(f"talking to {url} failed: {detail}")
    return TransportError(f"talking to {url} failed unexpectedly: {type(exc).__name__}: {detail}")


def status_error(status: int, body: bytes, **where: Any) -> StatusError:
    """The StatusError for an HTTP error answer; `http_status_error` names the likely cause of a bare one.
    `where`: method, url, location, retry_after (as `http_status_error` takes them)."""
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return http_status_error(status, body_text=text, server_message=parse_error_body(body), **where)


# ---- what both clients share ----


TransportT = TypeVar("TransportT")


def transport_options(backend: Backend, optimizations: Optimizations) -> dict[str, Any]:
    """What both clients' httpx transports are built with."""
    return {
        "verify": ssl_context(backend.verify, http2=optimizations.http2),
        "http2": optimizations.http2,
        "limits": pool_limits(fast=not optimizations.http2),
        "retries": 0,
    }


class ClientBase(Generic[TransportT]):
    """What both clients share; toggles become parts in `workbench.variant.build` only.

    `transport`: an httpx transport of the caller's (never closed by us: it may be shared); `cache`: a
    `ResponseCache` to use instead of the one the cache toggles build; `max_event_bytes`: the longest line /
    SSE event accepted (a longer one is a MalformedStreamError).
    """

    def __init__(
        self,
        backend: Backend | str,
        *,
        optimizations: Optimizations | None = None,
        timeouts: Timeouts | None = None,
        transport: TransportT | None = None,
        headers: Mapping[str, str] | None = None,
        cache: ResponseCache | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.backend = as_backend(backend)
        self.max_event_bytes = max_event_bytes
        self.optimizations = optimizations if optimizations is not None else Optimizations()
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self._transport = transport
        self._headers = dict(headers or {})
        self._protocol: ProtocolName | None = (
            None if self.backend.protocol == "auto" else self.backend.protocol
        )
        self._http: Any = None
        self._lock = threading.Lock()
        self._detect_lock = threading.Lock()
        self._closed = False
        self.parts = variant.build(self.optimizations, cache=cache)
        # `cache` (or a cache toggle): a ResponseCache answers repeats by replay, through its gate
        self.cache = self.parts.cache
        self._gate: CacheGate | None = None
        if self.cache is not None:
            # keys name the server by its normalised URL (+ a credential hash when the cache asks)
            identity = backend_identity(
                self.backend, credential=self.cache.key_by_credential, headers=self._headers
            )
            self._gate = CacheGate(
                self.cache, identity=identity, follower_timeout=follower_timeout(self.timeouts)
            )

    def __repr__(self) -> str:
        proto = self._protocol or "auto"
        opts = self.optimizations.label()
        return f"{type(self).__name__}({self.backend.url!r}, protocol={proto!r}, optimizations={opts!r})"

    def _new_http(self) -> Any:
        raise NotImplementedError

    def _acquire(self) -> tuple[Any, bool]:
        """(httpx client, owned): the pooled one (`connection_pool`), or a new one the caller must close."""
        if self._closed:
            name = type(self).__name__
            raise ConfigError(f"this {name} is closed", hint=f"create a new {name}")
        if not self.parts.transport.pooled:
            return self._new_http(), self._transport is None
        with self._lock:
            if self._http is None:
                self._http = self._new_http()
            return self._http, False

    def _starter(self, request: Request, live: Any, streaming: bool) -> Starter:
        t = self.parts.transport
        spec = EngineSpec(
            backend=self.backend.label,
            url=base_url(self.backend),
            protocol=self._protocol,
            optimizations=self.optimizations.as_dict(),
            timeouts=self.timeouts,
            early_cancel=t.early_cancel,
            fast_parse=t.fast_parse,
            max_event_bytes=self.max_event_bytes,
        )
        return Starter(request, spec, live, gate=self._gate, streaming=streaming)

    def _models(self, protocol: ProtocolName, resp: httpx.Response) -> list[str]:
        return models_from_response(protocol, resp, url_for(self.backend, MODEL_PATHS[protocol]))

    def _http_options(self) -> dict[str, Any]:
        return {"timeout": httpx_timeout(self.timeouts)}

    def _probe(self) -> Probe:
        return Probe(self.backend)

    @staticmethod
    def _pick(names: list[str]) -> str:
        return pick_model(names)

    @contextlib.contextmanager
    def _mapped_errors(self, url: str) -> Iterator[None]:
        """httpx errors of a plain GET (probe, model list) as workbench errors."""
        try:
            yield
        except httpx.HTTPError as exc:
            raise map_error(exc, url=url, phase="response", timeouts=self.timeouts) from None

    def _get_args(self, path: str, timeout: float) -> tuple[str, dict[str, str], httpx.Timeout]:
        """url, headers, timeout of a GET (protocol probe, model list)."""
        headers = request_headers(self.backend, None, self._headers)
        return url_for(self.backend, path), headers, httpx.Timeout(timeout, connect=self.timeouts.connect)


class SourceBase:
    """What the sync and async network sources share: the request to send, the answer's check, errors."""

    def __init__(
        self, client: ClientBase[Any], request: Request, headers: Mapping[str, str] | None, streaming: bool
    ) -> None:
        self._client, self._request, self._headers, self._streaming = client, request, headers, streaming
        self._owned = False
        self._resp: httpx.Response | None = None
        self._engine: StreamEngine | None = None
        self._trace = ConnectionTrace()
        self._decode: ContentDecoder | None = None
        self._content_type: str | Literal[False] | None = False  # False: checked (or not to be checked)

    def _begin(self, engine: StreamEngine) -> tuple[str, str, dict[str, str], bytes]:
        """(method, url, headers, body), and the send stamp."""
        self._engine = engine
        client = self._client
        prepared = build_request(engine.protocol, self._request, stream=self._streaming)
        headers = request_headers(
            client.backend, self._request.id, {**client._headers, **(self._headers or {})}
        )
        body = orjson.dumps(prepared.body)
        engine.sent()  # before a per-request client is built: the baseline pays for it, as users do
        return prepared.method, url_for(client.backend, prepared.path), headers, body

    def _answered(self, resp: httpx.Response) -> bool:
        """Connection facts to the engine; False when the status is an error (its body is read next)."""
        assert self._engine is not None
        t = self._trace
        self._engine.connected(connect_ms=t.connect_ms, reused=t.reused, http_version=resp.http_version)
        # we read raw bytes (stamped as they arrive), so we decode what we advertised ourselves; a response
        # built with content= (mock transports) was already decoded by httpx
        encoding = resp.headers.get("content-encoding", "identity")
        if encoding.strip().lower() not in ("", "identity") and not resp.is_stream_consumed:
            self._decode = decoder_for(encoding)
        self._content_type = resp.headers.get("content-type")
        return resp.status_code < 300  # redirects are not followed: a moved API is a wrong URL to fix

    def _received(self, data: bytes | None) -> bytes | None:
        """One raw read, decoded; the Content-Type judged with the first bytes (an HTML page is named)."""
        decode = self._decode
        if decode is not None:
            if data is None:
                self._decode = None  # the end of the body: what the decoder still holds, then the end
                data = decode.flush() or None
            else:
                data = decode(data)
        if self._content_type is not False:
            assert self._engine is not None
            check_content_type(self._engine.protocol, self._content_type, data or b"")
            self._content_type = False
        return data

    def _refused(self, resp: httpx.Response, method: str, url: str, chunks: Iterable[bytes]) -> StatusError:
        """The StatusError of an error answer, from (at most ERROR_BODY_LIMIT of) its body."""
        buf = bytearray()
        for chunk in chunks:
            buf += chunk
            if len(buf) >= ERROR_BODY_LIMIT:
                break
        return response_error(resp, method, url, bytes(buf[:ERROR_BODY_LIMIT]))

    def _mapped(self, exc: httpx.HTTPError, phase: Phase) -> Exception:
        engine = self._engine
        assert engine is not None
        if isinstance(exc, httpx.TimeoutException):
            err = engine.interruption(time.perf_counter_ns())
            if err is not None:
                return err
        return map_error(exc, url=engine.url, phase=phase, timeouts=engine.timeouts)


def response_error(resp: httpx.Response, method: str, url: str, body: bytes) -> StatusError:
    """The StatusError of an answer with status >= 300 (redirects are not followed: a moved API is a
    wrong URL to fix)."""
    return status_error(
        resp.status_code,
        body,
        method=method,
        url=url,
        location=resp.headers.get("location"),
        retry_after=resp.headers.get("retry-after"),
    )
