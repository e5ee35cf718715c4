"""Server-Sent Events framing (WHATWG HTML spec, "event stream interpretation"), bytes in, data out. No I/O.

Handles LF, CRLF and CR line ends (also a CRLF split across reads), `data:` with or without the space,
multi-line data, `:` comment / keep-alive lines, and ignores `event:`, `id:`, `retry:` and unknown fields.
Two framers: `SSEFramer` works on bytes (fast); `TextSSEFramer` works on decoded lines (baseline).
"""

from __future__ import annotations

from collections.abc import Callable

from workbench._exceptions import MalformedStreamError
from workbench.protocols._shape import DEFAULT_MAX_EVENT_BYTES, too_large

__all__ = ["SSEFramer", "TextSSEFramer"]

_BOM = b"\xef\xbb\xbf"
_WHAT = "SSE event"


class SSEFramer:
    """Byte-level SSE framing with bytes.find. `feed` returns the data payload of each completed event.

    Linear and bounded: the reads of an unfinished event wait in a list, each searched for the ending blank
    line once (and the seam between two reads), and are joined once, when that line comes; so a server that
    never ends an event costs each byte once, not once per read. An event (all its lines, comments and
    other fields included, line ends counted) over `max_event_bytes` is an error: `overflow` is set and
    the payloads before it are returned, for the caller to handle first.
    """

    __slots__ = ("_data", "_max", "_parts", "_pending", "_skip_lf", "_started", "overflow")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._parts: list[bytes] = []  # the unfinished event's reads (or the tail of one)
        self._pending = 0  # their bytes
        self._data: list[bytes] = []
        self._skip_lf = False
        self._started = False
        self._max = max_event_bytes
        self.overflow: MalformedStreamError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self.overflow is not None:
            return []
        data = self._prepare(data)
        parts = self._parts
        if parts:
            if not data:
                return []
            if data.find(b"\n\n") < 0 and not (data[0] == 0x0A and parts[-1].endswith(b"\n")):
                # still no blank line (in this read, or across the seam with the last): wait for more
                parts.append(data)
                self._pending += len(data)
                if self._pending > self._max:
                    self._overflow(b"".join(parts[:2])[:200], self._pending, ended=False)
                return []
            parts.append(data)
            work = b"".join(parts)
            self._parts, self._pending = [], 0
        else:
            work = data
        out = self._frame(work) if len(work) <= self._max else self._frame_checked(work)
        if self._pending > self._max:
            self._overflow(self._parts[0][:200], self._pending, ended=False)
        return out

    def _overflow(self, data: bytes, size: int, *, ended: bool) -> None:
        self.overflow = too_large(_WHAT, size, self._max, data, ended=ended)
        self._parts, self._pending = [], 0
        self._data = []

    def _frame_checked(self, work: bytes) -> list[bytes]:
        """`_frame` for a block larger than the limit (only such a block can hold an event over it)."""
        pos = 0
        end = work.find(b"\n\n")
        while end >= 0:
            if end + 1 - pos > self._max:
                out = self._frame(work[:pos]) if pos else []
                self._overflow(work[pos:end], end + 1 - pos, ended=True)
                return out
            pos = end + 2
            end = work.find(b"\n\n", pos)
        return self._frame(work)

    def _prepare(self, data: bytes) -> bytes:
        """This read with CR and CRLF line ends turned into LF (and a leading BOM dropped)."""
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
                    self._keep(work[last + 2 :])
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
            self._keep(work[pos:])
        return out

    def _keep(self, rest: bytes) -> None:
        """The start of an event whose blank line has not come yet (`_frame` runs with nothing kept)."""
        self._parts = [rest]
        self._pending = len(rest)

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
        work = b"".join(self._parts)
        self._parts, self._pending = [], 0
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


def _nbytes(line: str) -> int:
    """A decoded line's size on the wire (invalid UTF-8 was kept by surrogateescape)."""
    return len(line) if line.isascii() else len(line.encode("utf-8", "surrogateescape"))


class TextSSEFramer:
    """SSE framing over decoded text lines (what a typical SSE client does after iter_lines).

    Counts each event's bytes as SSEFramer does (every line with its LF, comments included), so an event
    over `max_event_bytes` is the same error here: `overflow` is set, the payloads before it returned.
    """

    __slots__ = ("_data", "_max", "_size", "_started", "overflow")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._data: list[str] = []
        self._started = False
        self._size = 0
        self._max = max_event_bytes
        self.overflow: MalformedStreamError | None = None

    def feed_lines(self, lines: list[str], nbytes: int | None = None) -> list[str]:
        """Payloads of the events these lines complete. `nbytes`, the lines' bytes with their line ends
        if the caller knows them, lets a batch that cannot hold an event over the limit skip the count."""
        out: list[str] = []
        if self.overflow is not None:
            return out
        if lines and not self._started:
            self._started = True
            if lines[0].startswith("\ufeff"):
                lines[0] = lines[0][1:]
        if nbytes is not None and self._size + nbytes <= self._max:
            self._lines(lines, out)
            # the open event's bytes: the lines after the last blank one (usually none: events end in one)
            tail = 0
            for line in reversed(lines):
                if not line:
                    break
                tail += _nbytes(line) + 1
            else:
                tail += self._size
            self._size = tail
            return out
        for line in lines:
            if not line:
                self._size = 0
                self._dispatch(out)
                continue
            self._size += _nbytes(line) + 1
            if self._size > self._max:
                shown = self._data[0] if self._data else line
                self._fail(self._size, shown.encode("utf-8", "surrogateescape"))
                return out
            self._field(line)
        return out

    def _lines(self, lines: list[str], out: list[str]) -> None:
        for line in lines:
            if line:
                self._field(line)
            else:
                self._dispatch(out)

    def _field(self, line: str) -> None:
        """A non-blank line: a `data` field's value joins the open event; comments and other fields do not."""
        if line.startswith(":"):
            return
        name, sep, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if sep and value.startswith(" ") else value)

    def _dispatch(self, out: list[str]) -> None:
        """A blank line ends the open event: its data lines, joined, are a payload (none if it had none)."""
        if self._data:
            out.append("\n".join(self._data))
            self._data = []

    def check_pending(self, pending_bytes: int, head: Callable[[], bytes]) -> None:
        """The event so far plus the unfinished line the line decoder holds (`head()`: its first bytes)."""
        if self.overflow is None and self._size + pending_bytes > self._max:
            shown = self._data[0].encode("utf-8", "surrogateescape") if self._data else head()
            self._fail(self._size + pending_bytes, shown, ended=False)

    def _fail(self, size: int, shown: bytes, *, ended: bool = True) -> None:
        self.overflow = too_large(_WHAT, size, self._max, shown, ended=ended)
        self._data = []

    def flush(self) -> list[str]:
        out: list[str] = []
        self._dispatch(out)
        return out
