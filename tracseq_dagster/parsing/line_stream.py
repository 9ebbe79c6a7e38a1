"""A text file as a stream of whole UTF-8 lines with their physical line numbers.

The CSV and JSON Lines readers take bounded, line-aligned byte chunks from it (never
cutting a quoted value in two), so every row keeps the line number a person can look up,
whatever the file's encoding or line ends.
"""

from __future__ import annotations

import codecs
from typing import IO

import numpy as np

from tracseq_dagster.parsing.errors import ExportParseError

_READ_BLOCK = 8 * 1024 * 1024


class _LineStream:
    """The text of a file as UTF-8 bytes, handed out in whole lines with physical line numbers."""

    def __init__(self, f: IO[bytes], head: bytes, encoding: str, skip: int, cr_newlines: bool, file: str) -> None:
        self._f = f
        self._pending = head[skip:]
        self._encoding = encoding
        self._ascii_compatible = codecs.lookup(encoding).name not in ("utf-16", "utf-16-le", "utf-16-be")
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._cr = cr_newlines
        self._file = file
        self._buf = bytearray()
        self._buf_nl = 0  # newlines in self._buf
        self._converted_nl = 0  # newlines in everything converted so far
        self._done = False
        self.line = 1  # physical line number of the next line handed out

    def _read_block(self) -> bool:
        if self._done:
            return False
        if self._pending:
            raw, self._pending = self._pending, b""
        else:
            raw = self._f.read(_READ_BLOCK)
        final = not raw
        if self._ascii_compatible and raw.isascii() and not self._decoder.getstate()[0]:
            out = raw  # ASCII is the same bytes in UTF-8: skip the decode/encode round trip
        else:
            try:
                text = self._decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                line = (self._converted_nl + raw[: max(e.start, 0)].count(b"\n") + 1) if self._ascii_compatible else None
                bad = raw[e.start : e.start + 4] if e.start >= 0 else b""
                raise ExportParseError(
                    self._file,
                    line,
                    None,
                    f"bytes {bad!r} are not valid {self._encoding} text (mixed encodings in one file?)",
                ) from None
            out = text.encode("utf-8")
        if self._cr:
            out = out.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        nul = out.find(b"\x00")
        if nul >= 0:
            line = self._converted_nl + out.count(b"\n", 0, nul) + 1
            raise ExportParseError(self._file, line, None, "not a text file (NUL byte in the data)")
        count = out.count(b"\n")
        self._converted_nl += count
        self._buf_nl += count
        self._buf += out
        if final:
            self._done = True
        return True

    def take_lines(self, k: int, *, quote_aware: bool = False) -> tuple[bytes, int, int]:
        """The next ``k`` lines (fewer at the end) as ``(bytes, first line number, number of lines)``.

        With ``quote_aware``, a cut that would fall inside a quoted value (an odd number of
        ``"`` before it) moves on to the next line end, so a record is never split.
        """
        while self._buf_nl < k and self._read_block():
            pass
        buf = self._buf
        if self._buf_nl >= k:
            newlines = k
            octets = np.frombuffer(buf, dtype=np.uint8)
            cut = int(np.flatnonzero(octets == 10)[k - 1]) + 1
            del octets  # release the export so the bytearray can shrink
        else:
            newlines = self._buf_nl
            cut = len(buf)
        if quote_aware and buf.find(b'"', 0, cut) >= 0:
            quotes = buf.count(b'"', 0, cut)
            while quotes % 2:
                nxt = buf.find(b"\n", cut)
                while nxt < 0 and self._read_block():
                    nxt = buf.find(b"\n", cut)
                if nxt < 0:
                    newlines += buf.count(b"\n", cut)
                    cut = len(buf)
                    break
                quotes += buf.count(b'"', cut, nxt + 1)
                cut = nxt + 1
                newlines += 1
        with memoryview(buf) as view:
            chunk = bytes(view[:cut])
        del buf[:cut]
        self._buf_nl -= newlines
        lines = newlines + (1 if chunk and not chunk.endswith(b"\n") else 0)
        first = self.line
        self.line += lines
        return chunk, first, lines


def _split_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
