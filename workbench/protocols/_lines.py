"""Text-level line splitting for the baseline parsers: what `httpx.Response.iter_lines` does.

Written here (not imported from httpx's private decoders) so the protocols package stays free of I/O
libraries; it splits on LF, CRLF and CR only, like the SSE spec and NDJSON expect.
"""

from __future__ import annotations

import codecs

__all__ = ["LineDecoder"]


class LineDecoder:
    """Bytes in, complete decoded lines out (without their line ends). UTF-8 split across reads is kept."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._trailing_cr = False
        self.last_partial = ""
        self.ended_with_newline = True

    def decode(self, data: bytes) -> list[str]:
        text = self._decoder.decode(data)
        return self._split(text)

    def flush(self, *, partial: bool = True) -> list[str]:
        """Lines still buffered at end of body; with `partial`, also an unterminated last line."""
        lines = self._split(self._decoder.decode(b"", final=True))
        self.last_partial = self._pending
        self.ended_with_newline = not self._pending
        if self._pending and partial:
            lines.append(self._pending)
        self._pending = ""
        return lines

    def _split(self, text: str) -> list[str]:
        if self._trailing_cr:
            # a CR ended the previous read: an LF now would make it one CRLF line end, not two
            self._trailing_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if not text:
            return []
        if "\r" in text:
            self._trailing_cr = text.endswith("\r")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        parts = text.split("\n")
        if self._pending:
            parts[0] = self._pending + parts[0]
        self._pending = parts.pop()
        return parts
