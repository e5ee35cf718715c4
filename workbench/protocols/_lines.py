"""Text-level line splitting for the baseline parsers: what `httpx.Response.iter_lines` does.

Written here (not imported from httpx's private decoders) so the protocols package stays free of I/O
libraries; it splits on LF, CRLF and CR (SSE) or on LF alone (NDJSON, where a CR is JSON whitespace).

Bounded and linear: the reads holding an unfinished line wait in a list (each read is searched for a line
end once, and the pieces are joined once, when the line ends; never re-joined or re-scanned), and a line
longer than `max_line_bytes` is an error instead of a buffer that grows with whatever a broken server
sends. Lines are split as bytes and decoded one block at a
time with `surrogateescape`, so invalid UTF-8 survives as lone surrogates the parsers can reject
(`check_utf8`) exactly where the fast parsers (which read bytes) reject it, instead of being replaced
by U+FFFD and accepted.
"""

from __future__ import annotations

from workbench._exceptions import MalformedStreamError
from workbench.protocols._shape import DEFAULT_MAX_EVENT_BYTES, too_large

__all__ = ["LineDecoder"]


class LineDecoder:
    """Bytes in, complete decoded lines out (without their line ends). UTF-8 split across reads is kept.

    `overflow` is set (and the lines before it returned) when a line exceeds `max_line_bytes`; the
    caller handles the returned lines first, then raises it.
    """

    def __init__(
        self, max_line_bytes: int = DEFAULT_MAX_EVENT_BYTES, what: str = "line", *, cr_ends_line: bool = True
    ) -> None:
        # NDJSON: only LF ends a line (a CR before it is JSON whitespace), as the fast parser reads it
        self._cr = cr_ends_line
        self._parts: list[bytes] = []  # the reads (or their tails) of the unfinished last line
        self._pending = 0  # their bytes
        self._trailing_cr = False
        self._max = max_line_bytes
        self._what = what
        self.overflow: MalformedStreamError | None = None
        self.last_bytes = 0  # bytes (line ends included) of the lines the last `decode` returned
        self.last_partial = ""
        self.ended_with_newline = True

    @property
    def pending_bytes(self) -> int:
        """Bytes of the unfinished last line."""
        return self._pending

    def head(self, limit: int = 120) -> bytes:
        """The first bytes of the unfinished last line, for an error message."""
        head = b""
        for part in self._parts:  # only the first few: joining them all per read would be quadratic
            head += part[: limit - len(head)]
            if len(head) >= limit:
                break
        return head

    def decode(self, data: bytes) -> list[str]:
        self.last_bytes = 0
        if self.overflow is not None:
            return []
        if self._trailing_cr:
            # a CR ended the previous read: an LF now would make it one CRLF line end, not two
            self._trailing_cr = False
            if data.startswith(b"\n"):
                data = data[1:]
        if not data:
            return []
        if self._cr and b"\r" in data:
            self._trailing_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        last = data.rfind(b"\n")
        if last < 0:
            self._parts.append(data)
            self._pending += len(data)
            self._check_pending()
            return []
        if self._parts:
            self._parts.append(data[:last])
            block = b"".join(self._parts)
        else:
            block = data[:last]
        rest = data[last + 1 :]
        self._parts = [rest] if rest else []
        self._pending = len(rest)
        if len(block) > self._max:
            # only a block larger than the cap can hold a line over it: the usual read pays nothing
            pos = 0
            for i, line in enumerate(block.split(b"\n")):
                if len(line) > self._max:
                    self.overflow = too_large(self._what, len(line), self._max, line)
                    self._parts, self._pending = [], 0
                    return self._text(block[: max(pos - 1, 0)]) if i else []
                pos += len(line) + 1
        lines = self._text(block)
        self.last_bytes = len(block) + 1
        self._check_pending()
        return lines

    @staticmethod
    def _text(block: bytes) -> list[str]:
        return block.decode("utf-8", "surrogateescape").split("\n")

    def _check_pending(self) -> None:
        if self._pending > self._max:
            self.overflow = too_large(self._what, self._pending, self._max, self.head(), ended=False)
            self._parts, self._pending = [], 0

    def flush(self, *, partial: bool = True) -> list[str]:
        """Lines still buffered at end of body; with `partial`, also an unterminated last line."""
        pending = b"".join(self._parts).decode("utf-8", "surrogateescape")
        self._parts, self._pending = [], 0
        self.last_partial = pending
        self.ended_with_newline = not pending
        return [pending] if pending and partial else []
