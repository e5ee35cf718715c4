"""The streaming engine: sleeps until chunks are due, writes them in batches, fires faults, stamps writes.

Runs on the server's event loop, one coroutine per request. All chunks already due go out in one ASGI send
(capped at `MAX_BATCH`), which is how zero-delay mode reaches hundreds of thousands of chunks a second; the
ground truth then gives every chunk of a batch the batch's single stamp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from workbench.simulator.faults import FaultPlan
from workbench.simulator.groundtruth import Ledger, _Live
from workbench.simulator.text import TokenStream
from workbench.simulator.timer import TimerHandle, call_at_ns
from workbench.simulator.trace import Lateness, ReplayChunks
from workbench.simulator.wire import StreamEncoder, Timing

__all__ = ["MAX_BATCH", "Flags", "Job", "Stopper", "run_full", "run_stream", "sleep_or_stop"]

MAX_BATCH = 1024
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Abort = Callable[[Send], Awaitable[None]]


@dataclass(slots=True)
class Flags:
    """Shared with the disconnect watcher: after the last byte, a closed connection is not a disconnect."""

    done_sending: bool = False


@dataclass(slots=True)
class Job:
    """One generation: seeded text and timing drawn as it streams, faults planned up front."""

    rec: _Live
    ledger: Ledger
    send: Send
    abort: Abort
    stop: Stopper  # set on client disconnect or server shutdown
    encoder: StreamEncoder
    tokens: TokenStream | ReplayChunks  # the text, drawn chunk by chunk (or a recorded chunking)
    tokens_per_chunk: int
    n_chunks: int
    first_due_ns: int  # absolute perf_counter_ns of content chunk 0
    gaps: Iterator[int]  # then one gap (ns) per following chunk
    plan: FaultPlan
    headers: list[tuple[bytes, bytes]]
    prefill_start_ns: int
    load_ns: int
    finish_reason: str
    flags: Flags = field(default_factory=lambda: Flags())
    started: bool = field(default=False)
    # OpenAI-style servers (vLLM, the OpenAI API) send the response headers as soon as the request is
    # accepted and the first token after prefill; Ollama (Go's net/http) sends them with its first write.
    headers_early: bool = field(default=False)
    # Wake on the sub-millisecond timer thread (timer.py; Profile.precise_timer): gaps are not quantized.
    precise: bool = field(default=False)
    # Replays learn how late their first chunk goes out, and aim the next ones that much earlier.
    lateness: Lateness | None = field(default=None)

    async def start(self) -> None:
        """Send the response headers now (a streaming response; the body follows)."""
        if not self.started:
            self.started = True
            await self.send({"type": "http.response.start", "status": 200, "headers": self.headers})

    async def write(self, body: bytes, n: int, n_text: int, *, more: bool = True) -> int:
        """Send body bytes (headers first if not yet sent); returns when the send returned (the bytes are
        with the transport), which is what a replay aims at its due time."""
        if not self.started:
            self.started = True
            headers = self.headers
            if not more:
                headers = [*headers, (b"content-length", str(len(body)).encode())]
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        stamp = perf_counter_ns()
        await self.send({"type": "http.response.body", "body": body, "more_body": more})
        sent = perf_counter_ns()
        if not more:
            self.flags.done_sending = True
        if n:
            self.ledger.emit(self.rec, stamp, n, n_text)
        return sent

    async def end_body(self) -> None:
        if not self.started:
            await self.write(b"", 0, 0, more=False)
        else:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            self.flags.done_sending = True

    async def close_abruptly(self) -> None:
        self.flags.done_sending = True
        if not self.rec.truth.disconnected:
            self.ledger.update(self.rec, aborted=True)
        await self.abort(self.send)

    def timing(self, first_emit_ns: int | None, last_emit_ns: int | None) -> Timing:
        now = perf_counter_ns()
        first = first_emit_ns if first_emit_ns is not None else now
        last = last_emit_ns if last_emit_ns is not None else now
        truth = self.rec.truth  # arrival and token counts, recorded before the job was made
        return Timing(
            total_ns=max(now - truth.received_ns, 1),
            load_ns=self.load_ns,
            prompt_eval_ns=max(first - self.prefill_start_ns, 1),
            eval_ns=max(last - first, 1),
            prompt_tokens=truth.prompt_tokens,
            completion_tokens=truth.completion_tokens,
            finish_reason=self.finish_reason,
        )


class Stopper:
    """A one-shot stop flag with cheap interruptible sleeps.

    `asyncio.wait_for(event.wait(), t)` spawns a task per sleep; one future plus one timer handle per
    sleep keeps many concurrent slow streams cheap on a small machine.
    """

    def __init__(self) -> None:
        self._set = False
        self._waiters: set[asyncio.Future[bool]] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(True)

    async def wait(self, timeout_s: float | None = None, *, precise: bool = False) -> bool:
        """True when stopped; False when `timeout_s` passed first (`precise`: on the sub-ms timer thread)."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        handle: asyncio.TimerHandle | TimerHandle | None = None
        if timeout_s is not None:
            if precise:
                handle = call_at_ns(perf_counter_ns() + int(timeout_s * 1e9), loop, fut)
            else:
                handle = loop.call_later(timeout_s, _resolve, fut)
        self._waiters.add(fut)
        try:
            return await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._waiters.discard(fut)


def _resolve(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


async def sleep_or_stop(stop: Stopper, delay_ns: int, *, precise: bool = False) -> bool:
    """Sleep; True when `stop` was set first (the caller must end the response)."""
    if delay_ns <= 0:
        return stop.is_set()
    return await stop.wait(delay_ns / 1e9, precise=precise)


async def run_stream(job: Job) -> None:
    plan, gaps, k = job.plan, job.gaps, job.tokens_per_chunk
    n = job.n_chunks
    due = job.first_due_ns  # due time of content chunk `sent`
    sent = 0
    shift = 0  # stall time pushes every later chunk back
    pre = job.encoder.preamble()
    malformed_done = stall_done = False
    first_emit: int | None = None
    last_emit: int | None = None
    if job.headers_early:
        await job.start()
    while True:
        if plan.malformed_at == sent and not malformed_done:
            malformed_done = True
            job.rec.faults.append("malformed")
            await job.write(b"".join(pre) + job.encoder.malformed(), len(pre) + 1, 0)
            pre = []
        if plan.stall_at == sent and not stall_done:
            stall_done = True
            job.rec.faults.append("stall")
            if pre:
                await job.write(b"".join(pre), len(pre), 0)
                pre = []
            t0 = perf_counter_ns()
            if await sleep_or_stop(job.stop, plan.stall_ns):
                await job.close_abruptly()
                return
            shift += perf_counter_ns() - t0
        if plan.disconnect_at == sent:
            job.rec.faults.append("disconnect")
            if pre or not job.started:
                await job.write(b"".join(pre), len(pre), 0)
            await job.close_abruptly()
            return
        if plan.error_at == sent:
            job.rec.faults.append("error")
            await job.write(
                b"".join(pre) + job.encoder.error_chunk("simulated error mid-stream"), len(pre) + 1, 0
            )
            await job.end_body()
            return
        if plan.truncate_at == sent:
            job.rec.faults.append("truncate")
            if pre:
                await job.write(b"".join(pre), len(pre), 0)
            await job.end_body()
            return
        if sent >= n:
            break
        now = perf_counter_ns()
        target = due + shift
        if target > now:
            if await sleep_or_stop(job.stop, target - now, precise=job.precise):
                await _stopped(job)
                return
            now = perf_counter_ns()
        else:
            # Let the disconnect watcher run even when the transport never blocks.
            await asyncio.sleep(0)
            if job.stop.is_set():
                await _stopped(job)
                return
        limit = min(plan.next_point(sent), sent + MAX_BATCH)
        j = sent + 1
        due += next(gaps)
        while j < limit and due + shift <= now:
            j += 1
            due += next(gaps)
        finish = job.finish_reason if j == n else None
        body = job.encoder.batch(job.tokens.take_chunks(j - sent, k), finish)
        if pre:
            body = b"".join(pre) + body
        stamp = perf_counter_ns()
        emitted = await job.write(body, len(pre) + j - sent, j - sent)
        if first_emit is None:
            first_emit = stamp
            if job.lateness is not None:
                job.lateness.add(emitted - (job.first_due_ns + shift))
        last_emit = stamp
        pre = []
        sent = j
    tail = list(pre)
    if n == 0:
        only = job.encoder.finish_only(job.finish_reason)
        if only:
            tail.append(only)
    tail.extend(job.encoder.tail(job.timing(first_emit, last_emit)))
    await job.write(b"".join(tail), len(tail), 0, more=False)


async def _stopped(job: Job) -> None:
    """Client gone or server shutting down: close the connection without an end marker."""
    await job.close_abruptly()


async def run_full(job: Job) -> None:
    """Non-streaming: wait out the whole generation, then send one body."""
    plan = job.plan
    end = job.first_due_ns if job.n_chunks else job.prefill_start_ns
    for _ in range(job.n_chunks - 1):
        end += next(job.gaps)
    if plan.stall_at is not None:
        end += plan.stall_ns
    if await sleep_or_stop(job.stop, end - perf_counter_ns(), precise=job.precise):
        await _stopped(job)
        return
    if plan.disconnect_at is not None:
        job.rec.faults.append("disconnect")
        await job.close_abruptly()
        return
    first = job.first_due_ns if job.n_chunks else job.prefill_start_ns
    text = "".join(job.tokens.take(job.tokens.remaining))
    body = job.encoder.full(text, job.timing(first, perf_counter_ns()))
    await job.write(body, 1, 1 if text else 0, more=False)
