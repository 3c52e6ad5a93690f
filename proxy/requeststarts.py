"""Where each request on a server connection begins, so that its request line can be held to
RFC 9112 §3's single spaces.

llhttp (httptools) accepts a run of spaces between the request line's method, target and
version — RFC 9112 §3 lets a recipient do that — but h11 and hyper's httparse refuse it, and so
does this proxy: what a strict parser refuses must never reach the app. httptools tells neither
where a message begins nor the request line's raw bytes, so the connection feeds the parser in
segments that end wherever a request can end: right after a blank line (the end of a head, or of
a chunked body) and right after a Content-Length body's last byte. A request that follows another
then begins a segment, and its first line is read from there before the parser sees it.
A chunked body full of blank lines is cut at each of them, about a microsecond a cut (14 ms
for a 48 KiB read of nothing else, measured once): still less per byte than the same bytes
sent as small requests, which any client may send.

Pure bookkeeping over bytes, no I/O: ``HttpConnection.data_received`` asks for each segment's
length, shows the segment to :meth:`RequestStarts.refusal` before feeding it, and reports with
:meth:`RequestStarts.fed` what the parser made of it.
"""

from __future__ import annotations

BLANK_LINE = b"\r\n\r\n"
EXTRA_SPACE = "more than one space between the request line's method, target and version (RFC 9112 §3)"


class RequestStarts:
    __slots__ = ("_tail", "_at_start", "_in_line", "_space", "_body_left", "_counted")

    def __init__(self) -> None:
        self._tail = b""  # the last bytes fed (up to 3), when a blank line may continue from them
        self._at_start = True  # the next bytes begin a request (perhaps after empty lines)
        self._in_line = False  # a request line began in an earlier segment and has not ended
        self._space = False  # ... and that segment ended with a space
        self._body_left: int | None = None  # of the Content-Length body being read
        self._counted = False  # the segment just measured is part of that body

    def head_complete(self, content_length: int | None, chunked: bool) -> None:
        """A request head was parsed: a Content-Length body is counted, a chunked one ends at a blank line."""
        self._body_left = None if chunked else content_length

    def segment(self, data: bytes, start: int, in_body: bool) -> int:
        """How many bytes of ``data`` from ``start`` to feed next: no request ends before the
        segment's last byte. (Offsets, not slices: a read cut in many places is copied once.)"""
        self._counted = in_body and bool(self._body_left)  # (a count run out goes on by blank lines: never a 0)
        if self._counted:
            return min(len(data) - start, self._body_left)  # type: ignore[type-var]
        tail = self._tail
        if tail:  # a blank line that began in the last segment ends in this one's first 3 bytes
            i = (tail + data[start:start + 3]).find(BLANK_LINE)
            if i >= 0:
                return i + 4 - len(tail)
        i = data.find(BLANK_LINE, start)
        return len(data) - start if i < 0 else i + 4 - start

    def refusal(self, segment: bytes) -> str | None:
        """Why the request line that begins or continues in ``segment`` is refused, or None."""
        if not (self._at_start or self._in_line):
            return None
        line = segment if self._in_line else segment.lstrip(b"\r\n")  # empty lines before a request (RFC 9112 §2.2)
        if not line:
            return None
        end = line.find(b"\n")
        part = line if end < 0 else line[:end]
        if b"  " in part or (self._space and part[:1] == b" "):
            return EXTRA_SPACE
        self._at_start = False
        self._in_line = end < 0
        self._space = part[-1:] == b" "
        return None

    def fed(self, segment: bytes, completed: bool) -> None:
        """``segment`` was fed; ``completed`` says a request ended in it (so, at its last byte)."""
        if self._counted:
            self._body_left -= len(segment)  # type: ignore[operator]
        if completed:
            self._at_start, self._in_line, self._tail = True, False, b""
        elif segment.endswith(BLANK_LINE):
            self._tail = b""  # a head with a body, or empty lines: nothing after it can end a request at once
        else:
            self._tail = segment[-3:] if len(segment) >= 3 else (self._tail + segment)[-3:]
