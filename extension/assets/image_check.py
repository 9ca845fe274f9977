"""One image file of a dataset: is it a regular file, does it open, is its data complete, how big is it.

The memory of a check is bounded whatever the image is: PNGs are verified by streaming their compressed data (never
inflated whole), JPEGs are decoded at 1/8 scale, other large images are decoded one at a time (and the largest not at
all). Nothing that is not a regular file is ever opened (a FIFO named 07.png would block a reader forever).
Used by dataset_check (the whole-folder report).
"""
from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

MIN_SIDE = 256  # smaller images are upscaled by training: blurry results
HUGE_SIDE = 8192  # bigger ones only slow caching down
HUGE_PIXELS = 40_000_000
BOMB_PIXELS = 178_956_970  # PIL refuses to open more than this (2 x MAX_IMAGE_PIXELS): a decompression bomb
BIG_DECODE_PIXELS = 4_000_000  # images this large are decoded one at a time
MAX_DECODE_PIXELS = HUGE_PIXELS  # beyond this, formats without a cheap check (WebP, BMP) get their header checked only
UNSUPPORTED_IMAGE_EXTS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".psd", ".svg", ".ico",
                          ".jp2", ".raw", ".cr2", ".nef", ".dng")


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (a FIFO, socket or device), else None.
    Never opens it: opening a FIFO blocks until someone writes to it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


_big_decode = threading.Lock()  # one large decode at a time bounds the check's memory


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_image(path: Path) -> tuple[str | None, tuple[int, int] | None, str]:
    """(problem or None, (w, h), sha256). Verifies the container, then the image data with bounded memory: a PNG's
    compressed stream is inflated and thrown away piece by piece, a JPEG is decoded at 1/8 scale, other formats are
    decoded whole only up to MAX_DECODE_PIXELS and one large image at a time."""
    from PIL import Image, UnidentifiedImageError

    kind = not_a_file(path)
    if kind:
        return f"not-a-file: {kind}", None, ""
    if os.path.getsize(path) == 0:
        return "corrupt: the file is empty: 0 bytes", None, ""
    digest = sha256_file(path)
    try:
        with Image.open(path) as img:
            size, fmt = img.size, img.format
            if size[0] * size[1] > BOMB_PIXELS:
                return "bomb", size, digest
            img.verify()  # the container: chunk CRCs and the end marker for PNG, the structure elsewhere
        pixels = size[0] * size[1]
        if fmt == "PNG":
            problem = png_data_problem(path)
            if problem:
                return f"corrupt: {problem}", None, digest
        elif fmt == "JPEG" or pixels <= MAX_DECODE_PIXELS:
            with (_big_decode if pixels > BIG_DECODE_PIXELS else _no_lock), Image.open(path) as img:
                if img.format == "JPEG":
                    img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))  # fast, still reads every byte
                img.load()
    except Image.DecompressionBombError:
        return "bomb", None, digest
    except UnidentifiedImageError:
        return "corrupt: its content is not a PNG, JPEG, WebP or BMP image", None, digest
    except Exception as err:  # noqa: BLE001 - PIL raises many types for damaged files
        return f"corrupt: {str(err).replace(str(path), path.name)}", None, digest
    return None, size, digest


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_no_lock = _NoLock()
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _png_raw_size(width: int, height: int, depth: int, colour: int, interlaced: bool) -> int:
    """The bytes a PNG's image data inflates to: filter byte + packed samples, per row of each pass."""
    bits = depth * _CHANNELS.get(colour, 4)
    passes = _ADAM7 if interlaced else [(0, 0, 1, 1)]
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def png_data_problem(path: Path, piece: int = 1 << 20) -> str | None:
    """Streams a PNG's IDAT data through zlib without keeping what it inflates to (memory: about `piece` bytes):
    None when the stream is complete and exactly as long as the header says, else what is wrong."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return "not a PNG file"
        expected = None
        inflater = zlib.decompressobj()
        produced = 0
        while True:
            head = f.read(8)
            if len(head) < 8:
                return "the file ends before its last chunk (truncated)"
            length, ctype = struct.unpack(">I4s", head)
            if ctype == b"IHDR":
                w, h, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", f.read(13))
                expected = _png_raw_size(w, h, depth, colour, interlace == 1)
                f.seek(length - 13 + 4, os.SEEK_CUR)
                continue
            if ctype == b"IDAT":
                left = length
                while left:
                    data = f.read(min(piece, left))
                    if not data:
                        return "the file ends inside its image data (truncated)"
                    left -= len(data)
                    while data:
                        produced += len(inflater.decompress(data, piece))
                        data = inflater.unconsumed_tail
                        if expected is not None and produced > expected:
                            return "its image data is longer than its size says"
                f.seek(4, os.SEEK_CUR)  # the CRC (img.verify() checked it)
                continue
            if ctype == b"IEND":
                produced += len(inflater.flush())
                if not inflater.eof or expected is None or produced != expected:
                    return "its image data is incomplete (truncated or damaged)"
                return None
            f.seek(length + 4, os.SEEK_CUR)
