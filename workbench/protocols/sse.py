"""Server-Sent Events framing (WHATWG HTML spec, "event stream interpretation"), bytes in, data out. No I/O.

Handles LF, CRLF and CR line ends (also a CRLF split across reads), `data:` with or without the space,
multi-line data, `:` comment / keep-alive lines, and ignores `event:`, `id:`, `retry:` and unknown fields.
Two framers: `SSEFramer` works on bytes (fast); `TextSSEFramer` works on decoded lines (baseline).
"""

from __future__ import annotations

__all__ = ["SSEFramer", "TextSSEFramer"]

_BOM = b"\xef\xbb\xbf"


class SSEFramer:
    """Byte-level SSE framing with bytes.find. `feed` returns the data payload of each completed event."""

    __slots__ = ("_buf", "_data", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._data: list[bytes] = []
        self._skip_lf = False
        self._started = False

    def feed(self, data: bytes) -> list[bytes]:
        return self._frame(self._prepare(data))

    def _prepare(self, data: bytes) -> bytes:
        """This read appended to what was buffered, with CR and CRLF line ends turned into LF."""
        if not self._started and data:
            self._started = True
            if data.startswith(_BOM):
                data = data[3:]
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        if b"\r" in data:
            # normalise CR and CRLF to LF; a CR ending this read may be the first half of a CRLF
            self._skip_lf = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._buf:
            self._buf += data
            work: bytes = bytes(self._buf)
            self._buf.clear()
            return work
        return data

    def _frame(self, work: bytes) -> list[bytes]:
        last = work.rfind(b"\n\n")
        if last >= 0 and not self._data and work.startswith(b"data: "):
            # The usual read: nothing but single-line `data: ` events. One split cuts all payloads out
            # (instead of a find/startswith/slice per event); it was that form exactly if no payload
            # holds an LF (a join and a memchr tell). Anything else is framed line by line below.
            out = work[6:last].split(b"\n\ndata: ")
            if b"".join(out).find(b"\n") < 0:
                if last + 2 < len(work):
                    self._buf += work[last + 2 :]
                return out
        out = []
        pos = 0
        # Frame whole events (up to the blank line); the usual event is one `data: ` line and skips the
        # per-line machinery. Anything else (comments, other fields, multi-line data) goes line by line.
        end = work.find(b"\n\n")
        while end >= 0:
            if not self._data and work.startswith(b"data: ", pos) and work.find(b"\n", pos, end) < 0:
                out.append(work[pos + 6 : end])
            else:
                nl = work.find(b"\n", pos, end)
                while nl >= 0:
                    self._line(work[pos:nl], out)
                    pos = nl + 1
                    nl = work.find(b"\n", pos, end)
                self._line(work[pos:end], out)
                self._line(b"", out)
            pos = end + 2
            end = work.find(b"\n\n", pos)
        if pos < len(work):
            self._buf += work[pos:]
        return out

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if not line:
            if self._data:
                out.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                self._data = []
            return
        if line.startswith(b"data"):
            if len(line) == 4:
                self._data.append(b"")
                return
            if line[4] == 0x3A:  # "data:"
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
                return
        # comments (":..."), event/id/retry and unknown fields carry nothing for us

    def flush(self) -> list[bytes]:
        """End of body: an event whose blank line never came is still handed over (lenient).

        A partial last line (no line end) is dropped: it was cut mid-line.
        """
        work = bytes(self._buf)
        self._buf.clear()
        pos = 0
        nl = work.find(b"\n")
        while nl >= 0:
            self._line(work[pos:nl], [])
            pos = nl + 1
            nl = work.find(b"\n", pos)
        if self._data:
            out = [b"\n".join(self._data)]
            self._data = []
            return out
        return []


class TextSSEFramer:
    """SSE framing over decoded text lines (what a typical SSE client does after iter_lines)."""

    __slots__ = ("_data", "_started")

    def __init__(self) -> None:
        self._data: list[str] = []
        self._started = False

    def feed_lines(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        if lines and not self._started:
            self._started = True
            if lines[0].startswith("\ufeff"):
                lines[0] = lines[0][1:]
        for line in lines:
            if not line:
                if self._data:
                    out.append("\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(":"):
                continue
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
        return out

    def flush(self) -> list[str]:
        if self._data:
            out = ["\n".join(self._data)]
            self._data = []
            return out
        return []
