"""The ASGI app: routes, request validation, per-request profile, queueing, cold starts, embeddings.

Written against bare ASGI (no framework) because the streaming path needs the raw `send`/`receive`:
batched body writes, a disconnect watcher on `receive`, and an abrupt connection close for faults.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import time
from array import array
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson

from workbench.simulator import wire_ollama, wire_openai
from workbench.simulator._hypercorn_adapter import drop_response
from workbench.simulator.faults import FaultPlan, error_status_message
from workbench.simulator.generate import Flags, Job, Stopper, run_full, run_stream, sleep_or_stop
from workbench.simulator.groundtruth import Ledger, _Live
from workbench.simulator.latency import ColdStarts, schedule
from workbench.simulator.profile import Profile, ProfileError, apply_overrides
from workbench.simulator.request_body import BadRequest, parse_json, prompt_text, read_body
from workbench.simulator.text import TokenStream, count_tokens, embed_many, output_length, rng_for
from workbench.simulator.trace import Lateness, Replay, ReplayChunks, plan_replay
from workbench.simulator.wire import StreamEncoder, rfc3339_nano

__all__ = ["AbortConnection", "SimApp", "abort_connection"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Proto = Literal["ollama", "openai"]
Kind = Literal["chat", "completion", "embed"]

_JSON_OLLAMA = b"application/json; charset=utf-8"
_JSON_OPENAI = b"application/json"


class AbortConnection(Exception):
    """Raised out of the app to make servers that close on app errors (uvicorn) drop the connection."""


async def abort_connection(send: Send) -> None:
    """Close the client's connection mid-response, with no end marker.

    ASGI has no message for this; under hypercorn `_hypercorn_adapter.drop_response` does it (HTTP/2:
    only this stream is reset). Under any other server we raise `AbortConnection`, which servers that
    close on app errors turn into a dropped connection.
    """
    if await drop_response(send) is None:
        raise AbortConnection


@dataclass(frozen=True, slots=True)
class _Route:
    method: bytes
    proto: Proto
    kind: str


_ROUTES: dict[str, _Route] = {
    "/": _Route(b"GET", "ollama", "root"),
    "/api/version": _Route(b"GET", "ollama", "version"),
    "/api/tags": _Route(b"GET", "ollama", "tags"),
    "/api/chat": _Route(b"POST", "ollama", "chat"),
    "/api/generate": _Route(b"POST", "ollama", "completion"),
    "/api/embed": _Route(b"POST", "ollama", "embed"),
    "/v1/models": _Route(b"GET", "openai", "models"),
    "/v1/chat/completions": _Route(b"POST", "openai", "chat"),
    "/v1/completions": _Route(b"POST", "openai", "completion"),
    "/v1/embeddings": _Route(b"POST", "openai", "embed"),
}


def _error(proto: Proto, exc: BadRequest) -> tuple[bytes, bytes]:
    if proto == "ollama":
        return wire_ollama.error_body(exc.message), _JSON_OLLAMA
    return wire_openai.error_body(
        exc.message, status=exc.status, param=exc.param, code=exc.code
    ), _JSON_OPENAI


class SimApp:
    """ASGI 3 app. One instance per server; its state lives on the server's event loop."""

    def __init__(self, profile: Profile, ledger: Ledger, *, control: bool = False) -> None:
        self.profile = profile
        self.ledger = ledger
        # `/_sim/*` answers ground-truth queries over HTTP (for a simulator in another process).
        self.control = control
        self.cold = ColdStarts()
        self.abort: Callable[[Send], Awaitable[None]] = abort_connection
        self._sems: dict[int, asyncio.Semaphore] = {}
        self._lateness: dict[str, Lateness] = {}  # per protocol: their first writes differ (headers)
        self._stops: set[Stopper] = set()
        self._ids = itertools.count(1)
        self._closing = False
        self._started = int(time.time())

    def shutdown(self) -> None:
        """Loop thread only: end every in-flight response now (they close without an end marker)."""
        self._closing = True
        for ev in list(self._stops):
            ev.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if self.control and scope["path"].startswith("/_sim/"):
            await self._control(scope, send)
            return
        client = scope.get("client")
        self.ledger.count(tuple(client) if client else None, str(scope.get("http_version", "")))
        path: str = scope["path"]
        route = _ROUTES.get(path)
        method = scope["method"].encode()
        if route is None or (method != route.method and method != b"GET" and method != b"HEAD"):
            # An error answer to a request whose body was never read makes the server drop the connection
            # after the answer; a keep-alive client may already be sending its next request on it (seen as
            # "server disconnected without sending a response"). Read the body first, as real servers do.
            with contextlib.suppress(BadRequest):
                await read_body(receive)
        if route is None:
            if path.startswith("/v1/"):
                text = f"Invalid URL ({scope['method']} {path})"
                await _send(send, 404, wire_openai.error_body(text, status=404), _JSON_OPENAI)
            else:
                await _send(send, 404, b"404 page not found", b"text/plain")
            return
        if method != route.method and not (method == b"HEAD" and route.method == b"GET"):
            bad = BadRequest(405, f"method {scope['method']} not allowed on {path}")
            body, ctype = _error(route.proto, bad)
            await _send(send, 405, body, ctype)
            return
        if route.method == b"GET":
            await self._get(route.kind, send)
            return
        await self._post(scope, receive, send, route)

    async def _control(self, scope: Scope, send: Send) -> None:
        q = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        what = scope["path"][len("/_sim/") :]
        rid = q.get("id", "")
        body: Any
        if what == "stats":
            body = dataclasses.asdict(self.ledger.stats())
        elif what == "wait":
            # The ledger blocks on a threading.Condition: keep that off the event loop.
            timeout = float(q.get("timeout_s", "5"))
            disconnect = q.get("disconnect") == "1"
            body = {"ok": await asyncio.to_thread(self.ledger.wait, rid, timeout, disconnect=disconnect)}
        elif what == "ground_truth":
            await asyncio.to_thread(self.ledger.wait, rid, float(q.get("wait_s", "2")), disconnect=False)
            gt = self.ledger.get(rid)
            if gt is None:
                await _send(send, 404, orjson.dumps({"error": f"no ground truth for {rid!r}"}), _JSON_OPENAI)
                return
            body = dataclasses.asdict(gt)
        else:
            await _send(send, 404, b"404 page not found", b"text/plain")
            return
        await _send(send, 200, orjson.dumps(body), _JSON_OPENAI)

    async def _get(self, kind: str, send: Send) -> None:
        p = self.profile
        if kind == "root":
            await _send(send, 200, b"Ollama is running", b"text/plain; charset=utf-8")
        elif kind == "version":
            await _send(send, 200, orjson.dumps({"version": p.version}), _JSON_OLLAMA)
        elif kind == "tags":
            stamp = rfc3339_nano(self._started * 1_000_000_000)
            await _send(send, 200, wire_ollama.tags_body(p.models + p.embed_models, stamp), _JSON_OLLAMA)
        else:
            await _send(
                send, 200, wire_openai.models_body(p.models + p.embed_models, self._started), _JSON_OPENAI
            )

    async def _post(self, scope: Scope, receive: Receive, send: Send, route: _Route) -> None:
        headers = dict(scope["headers"])
        raw_id = headers.get(b"x-request-id")
        rid = raw_id.decode("latin-1") if raw_id else f"sim-{next(self._ids)}"
        rec = self.ledger.open(rid, str(scope.get("http_version", "")), scope["path"])
        proto = route.proto
        try:
            try:
                body = await read_body(receive)
                if body is None:
                    self.ledger.mark_disconnect(rec, perf_counter_ns())
                    return
                profile = apply_overrides(
                    self.profile,
                    _hdr(headers, b"x-sim-override"),
                    _hdr(headers, b"x-sim-fault"),
                )
                data = parse_json(proto, body)
                if route.kind == "embed":
                    await self._embed(proto, data, profile, rec, send)
                else:
                    kind: Literal["chat", "completion"] = "chat" if route.kind == "chat" else "completion"
                    await self._generate(proto, kind, data, profile, rec, receive, send)
            except ProfileError as exc:
                await self._reply_error(send, rec, proto, BadRequest(400, f"simulator: {exc}"))
            except BadRequest as exc:
                await self._reply_error(send, rec, proto, exc)
        finally:
            self.ledger.close(rec)

    async def _reply_error(self, send: Send, rec: _Live, proto: Proto, exc: BadRequest) -> None:
        body, ctype = _error(proto, exc)
        self.ledger.update(rec, status=exc.status)
        stamp = perf_counter_ns()
        await _send(send, exc.status, body, ctype, request_id=rec.truth.request_id)
        self.ledger.emit(rec, stamp, 1, 0)

    def _check_model(self, proto: Proto, data: dict[str, Any], profile: Profile, *, embed: bool) -> str:
        model = data.get("model")
        if not isinstance(model, str) or not model:
            msg = "model is required" if proto == "ollama" else "you must provide a model parameter"
            raise BadRequest(400, msg, param="model" if proto == "openai" else None)
        known = profile.models + profile.embed_models if embed else profile.models
        base = model[:-7] if model.endswith(":latest") else model
        if model not in known and base not in known:
            if proto == "ollama":
                raise BadRequest(404, f'model "{model}" not found, try pulling it first')
            raise BadRequest(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return model

    async def _embed(
        self, proto: Proto, data: dict[str, Any], profile: Profile, rec: _Live, send: Send
    ) -> None:
        model = self._check_model(proto, data, profile, embed=True)
        raw = data.get("input")
        if isinstance(raw, str):
            texts = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
            texts = list(raw)
        else:
            msg = "input must be a string or a list of strings"
            raise BadRequest(400, msg if proto == "ollama" else f"'input' is invalid: {msg}", param="input")
        if profile.error_status is not None:
            msg = error_status_message(profile.error_status)
            raise BadRequest(profile.error_status, msg)
        self.ledger.update(rec, model=model)
        vectors = embed_many(texts, profile.embed_dim)
        if profile.embed_ms:
            await asyncio.sleep(profile.embed_ms / 1000 * len(texts))
        n_tok = sum(count_tokens(t) for t in texts)
        if proto == "ollama":
            body = orjson.dumps(
                {
                    "model": model,
                    "embeddings": vectors,
                    "total_duration": perf_counter_ns() - rec.truth.received_ns,
                    "load_duration": 0,
                    "prompt_eval_count": n_tok,
                }
            )
            ctype = _JSON_OLLAMA
        else:
            b64 = data.get("encoding_format") == "base64"
            items = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": base64.b64encode(array("f", v).tobytes()).decode() if b64 else v,
                }
                for i, v in enumerate(vectors)
            ]
            usage = {"prompt_tokens": n_tok, "total_tokens": n_tok}
            body = orjson.dumps({"object": "list", "data": items, "model": model, "usage": usage})
            ctype = _JSON_OPENAI
        self.ledger.update(rec, status=200, prompt_tokens=n_tok)
        stamp = perf_counter_ns()
        await _send(send, 200, body, ctype, request_id=rec.truth.request_id)
        self.ledger.emit(rec, stamp, 1, 0)

    async def _generate(
        self,
        proto: Proto,
        kind: Literal["chat", "completion"],
        data: dict[str, Any],
        profile: Profile,
        rec: _Live,
        receive: Receive,
        send: Send,
    ) -> None:
        model = self._check_model(proto, data, profile, embed=False)
        prompt = prompt_text(proto, kind, data)
        options = data.get("options") if proto == "ollama" else data
        if not isinstance(options, dict):
            options = {}
        if proto == "ollama":
            stream = data.get("stream", True) is not False
            limit = options.get("num_predict")
            include_usage = False
        else:
            stream = data.get("stream") is True
            limit = data.get("max_completion_tokens", data.get("max_tokens"))
            so = data.get("stream_options")
            include_usage = isinstance(so, dict) and so.get("include_usage") is True
        req_seed = options.get("seed")
        # A request's own seed (OpenAI `seed`, Ollama `options.seed`) picks another answer, deterministically.
        seed = profile.seed
        if isinstance(req_seed, int) and not isinstance(req_seed, bool):
            seed = profile.seed * 1_000_003 + req_seed
        if profile.error_status is not None:
            raise BadRequest(profile.error_status, error_status_message(profile.error_status))

        prompt_tokens = count_tokens(prompt)
        # A recorded server's request stands in for the latency model and the output length.
        replay = plan_replay(profile.replay_trace, data, prompt, seed, limit)
        if replay is not None:
            n_tokens, finish = replay.completion_tokens, replay.finish_reason
        elif isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            n_tokens, finish = limit, "length"
        else:
            lo, hi = profile.default_tokens_min, profile.default_tokens_max
            n_tokens, finish = output_length(seed, model, prompt, lo, hi), "stop"
        self.ledger.update(
            rec, model=model, prompt_tokens=prompt_tokens, completion_tokens=n_tokens, status=200
        )

        stop = Stopper()
        flags = Flags()
        self._stops.add(stop)
        if self._closing:
            stop.set()
        watcher = asyncio.ensure_future(self._watch(receive, rec, stop, flags))
        sem = self._sem(profile.max_parallel)
        acquired = begun = False
        try:
            t_q = perf_counter_ns()
            if sem is not None:
                acquired = await _acquire(sem, stop)
                if not acquired:
                    return
            queued_ns = perf_counter_ns() - t_q
            now = perf_counter_ns()
            load_ns = self.cold.load_wait_ns(profile, model, now)
            self.cold.begin(model, now)
            begun = True
            self.ledger.update(rec, queued_ms=queued_ns / 1e6, load_ms=load_ns / 1e6)
            if load_ns and await sleep_or_stop(stop, load_ns):
                await self.abort(send)
                return
            job = self._job(
                proto,
                kind,
                model,
                prompt,
                seed,
                n_tokens,
                finish,
                include_usage,
                stream,
                profile,
                rec,
                send,
                stop,
                flags,
                load_ns,
                prompt_tokens,
                replay,
            )
            if stream:
                await run_stream(job)
            else:
                await run_full(job)
        finally:
            flags.done_sending = True
            watcher.cancel()
            self._stops.discard(stop)
            if acquired and sem is not None:
                sem.release()
            if begun:
                self.cold.end(model, perf_counter_ns())

    def _job(
        self,
        proto: Proto,
        kind: Literal["chat", "completion"],
        model: str,
        prompt: str,
        seed: int,
        n_tokens: int,
        finish: str,
        include_usage: bool,
        stream: bool,
        profile: Profile,
        rec: _Live,
        send: Send,
        stop: Stopper,
        flags: Flags,
        load_ns: int,
        prompt_tokens: int,
        replay: Replay | None,
    ) -> Job:
        prefill_start = perf_counter_ns()
        tokens: TokenStream | ReplayChunks
        start = prefill_start
        lateness: Lateness | None = None
        if replay is not None:
            k, n_chunks, tokens = 1, replay.n_chunks, replay.chunks(seed, model, prompt)
            lateness = self._lateness.setdefault(proto, Lateness())
            ttft_ns, gaps = max(replay.ttft_ns - lateness.estimate_ns(), 0), replay.gaps()
            # A recorded TTFT runs from the client's send: count it from the request's arrival (plus any
            # queueing or load this simulator added), so our own parsing is not added on top of it.
            start = min(prefill_start, rec.truth.received_ns + int(rec.truth.queued_ms * 1e6) + load_ns)
        else:
            k = profile.tokens_per_chunk
            n_chunks = -(-n_tokens // k)
            tokens = TokenStream(seed, model, prompt, n_tokens)
            sched = schedule(profile, prompt_tokens, rng_for("latency", seed, model, prompt))
            ttft_ns, gaps = sched.ttft_ns, sched.gaps
        encoder: StreamEncoder
        if proto == "ollama":
            encoder = wire_ollama.OllamaEncoder(kind, model)
            ctype = encoder.content_type.encode() if stream else _JSON_OLLAMA
        else:
            encoder = wire_openai.OpenAIEncoder(kind, model, include_usage)
            ctype = encoder.content_type.encode() if stream else _JSON_OPENAI
        headers = [(b"content-type", ctype), (b"x-request-id", rec.truth.request_id.encode("latin-1"))]
        if stream and proto == "openai":
            headers.append((b"cache-control", b"no-cache"))
        plan = FaultPlan.build(profile, n_chunks)
        rec.faults.extend(f"planned:{n}" for n in plan.names())
        return Job(
            rec=rec,
            ledger=self.ledger,
            send=send,
            abort=self.abort,
            stop=stop,
            encoder=encoder,
            tokens=tokens,
            tokens_per_chunk=k,
            n_chunks=n_chunks,
            first_due_ns=start + ttft_ns,
            gaps=gaps,
            plan=plan,
            headers=headers,
            headers_early=stream and proto == "openai",
            precise=replay is not None if profile.precise_timer is None else profile.precise_timer,
            lateness=lateness,
            prefill_start_ns=prefill_start,
            load_ns=load_ns,
            finish_reason=finish,
            flags=flags,
        )

    def _sem(self, limit: int | None) -> asyncio.Semaphore | None:
        if limit is None:
            return None
        sem = self._sems.get(limit)
        if sem is None:
            sem = self._sems[limit] = asyncio.Semaphore(limit)
        return sem

    async def _watch(self, receive: Receive, rec: _Live, stop: Stopper, flags: Flags) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                if not flags.done_sending:
                    self.ledger.mark_disconnect(rec, perf_counter_ns())
                    stop.set()
                return


async def _acquire(sem: asyncio.Semaphore, stop: Stopper) -> bool:
    """Wait for a slot; False when the client left or the server stopped while queued."""
    if not sem.locked():
        await sem.acquire()
        return True
    acq = asyncio.ensure_future(sem.acquire())
    halt = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acq, halt}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt.cancel()
        if not acq.done():
            acq.cancel()
    if acq.done() and not acq.cancelled():
        if stop.is_set():
            sem.release()
            return False
        return True
    return False


def _hdr(headers: dict[bytes, bytes], name: bytes) -> str | None:
    v = headers.get(name)
    return v.decode("utf-8", "replace") if v else None


async def _send(send: Send, status: int, body: bytes, ctype: bytes, *, request_id: str | None = None) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
