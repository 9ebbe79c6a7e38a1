"""Which text encoding a file is in, and whether it is text at all.

UTF-8 (with or without BOM) and UTF-16 with BOM are recognised outright; otherwise cp1252
wins when it decodes and most letters are ASCII, and charset-normalizer decides the rest.
Binary files are named by their magic bytes (a Parquet file, an .xlsx workbook, a PDF).
"""

from __future__ import annotations

import codecs
import re

import charset_normalizer

from tracseq_dagster.parsing.errors import ExportParseError

_MAGIC = (
    (b"PAR1", "a Parquet file"),
    (b"\x89PNG", "a PNG image"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "an OLE2 file (an .xls workbook?)"),
    (b"\xff\xd8\xff", "a JPEG image"),
)


def _binary_reason(head: bytes) -> str:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"not a text file (looks like {what})"
    return "not a text file (binary content)"


def _detect_encoding(head: bytes, complete: bool, file: str) -> tuple[str, int, bool]:
    """(codec name, bytes of BOM to skip before decoding, had a BOM)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3, True
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", 0, True  # the utf-16 codec consumes the BOM
    if b"\x00" in head:
        raise ExportParseError(file, 1, None, _binary_reason(head))
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        return "utf-8", 0, False
    except UnicodeDecodeError:
        pass
    # Not UTF-8. Labs that do not write UTF-8 write a Windows code page, in Western Europe
    # cp1252. charset-normalizer cannot tell the Latin code pages apart on a short, mostly ASCII
    # sample (it guesses cp1250, iso8859_16 or even shift_jis for German text), so cp1252 wins
    # when it decodes and most letters are ASCII; charset-normalizer decides the rest (text in
    # a non-Latin script, bytes cp1252 cannot decode) and whether the bytes are text at all.
    try:
        text = head.decode("cp1252")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        letters = [ch for ch in text if ch.isalpha()]
        foreign = sum(not ch.isascii() for ch in letters)
        if foreign <= 0.3 * max(len(letters), 1):
            return "cp1252", 0, False
    best = charset_normalizer.from_bytes(head).best()
    if best is None:
        raise ExportParseError(file, 1, None, _binary_reason(head) + ": the bytes do not decode in any text encoding")
    return best.encoding, 0, False


_CONTROL_CHARS = re.compile(r"[\x01-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
