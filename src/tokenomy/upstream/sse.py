"""Incremental server-sent events parser (WHATWG ``text/event-stream``), for any provider.

Feed it the body as it arrives, in chunks of any size; it returns each event once it is
complete (ended by a blank line) as ``(event name or None, data bytes)``:

- lines end with ``\\n``, ``\\r\\n`` or ``\\r``, even when a ``\\r\\n`` pair is split
  across two chunks;
- several ``data:`` lines of one event are joined with ``\\n``;
- comment lines (``: keep-alive``), ``id:`` and ``retry:`` are dropped;
- an event with no ``data`` line is not dispatched (as the standard says);
- a UTF-8 byte order mark at the start of the stream is skipped.

:meth:`SSEParser.flush` returns an event left unterminated when the stream ends. The
standard discards it; tokenomy keeps it because a final usage event is billing truth.
"""

from __future__ import annotations

import re

__all__ = ["SSEParser"]

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


class SSEParser:
    __slots__ = ("_bom_checked", "_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[bytes] = []
        self._bom_checked = False

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        """Consume ``chunk``; return the events it completed, in order."""
        buffer = self._buffer + chunk if self._buffer else bytes(chunk)
        if not self._bom_checked:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer  # could still be the start of a BOM
                return []
            self._bom_checked = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        events: list[tuple[str | None, bytes]] = []
        start = 0
        end_of_buffer = len(buffer)
        for match in _LINE_END.finditer(buffer):
            if match.end() == end_of_buffer and match.group() == b"\r":
                break  # a lone \r at the end may be the first half of \r\n: wait
            self._line(buffer[start : match.start()], events)
            start = match.end()
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[tuple[str | None, bytes]]:
        """End of stream: return the pending event, if it has data, and reset."""
        events: list[tuple[str | None, bytes]] = []
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r"), b""
            self._line(line, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[tuple[str | None, bytes]]) -> None:
        if not line:
            if self._data:
                events.append((self._event, b"\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if line[0] == 0x3A:  # ":" starts a comment
            return
        field, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        # "id", "retry" and unknown fields are ignored
