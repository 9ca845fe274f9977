"""What a dataset zip's entries may be, checked before anything is written, and their extraction counted again
byte by byte: the entry count from the end record, zip-slip, absolute paths, symlinks, names Windows cannot hold,
too large, and suspicious compression ratios. dataset_import.import_zip runs them."""
from __future__ import annotations

import os
import re
import stat
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cloudlora_backend.trainer.data import layout as L

from .. import portable_names, private_files
from ..errors import UserError


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int = 8 << 30  # uncompressed
    max_files: int = 20_000
    max_ratio: float = 200.0  # uncompressed / compressed, for entries over 1 MiB and for the whole archive
    max_file_bytes: int = 1 << 30
    ratio_floor_bytes: int = 16 << 20  # archives extracting to less than this are never refused for their ratio


def is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def safe_member(info: zipfile.ZipInfo, zip_name: str) -> PurePosixPath | None:
    """The entry's relative path, or None for entries that are skipped silently (hidden/system files, folders)."""
    raw = info.filename
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UserError(f"{zip_name} contains an absolute path ({raw!r}); it was refused and nothing was extracted.",
                        "Create the zip from inside the dataset folder (relative paths only).")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise UserError(f"{zip_name} contains a path that leaves the extraction folder ({raw!r}, zip-slip); it was "
                        "refused and nothing was extracted.", "Create the zip again from the dataset folder.")
    if is_symlink(info):
        raise UserError(f"{zip_name} contains a symbolic link ({raw!r}); links are refused and nothing was "
                        "extracted.", "Zip the real files instead of links (e.g. `zip -r` without -y).")
    if any(L.is_hidden(PurePosixPath(p)) for p in parts) or info.is_dir():
        return None
    kept = [p for p in parts if p not in ("", ".")]
    why = portable_names.path_problem(kept)
    if why:  # 'a:b.png' would write a stream of 'a' on Windows; 'CON.png' a device; 'x.' would lose its dot
        raise UserError(f"{zip_name} contains {raw!r}, which cannot be a file on Windows ({why}); it was refused "
                        "and nothing was extracted.", "Rename that file (letters, digits, '_', '-', '.') and zip "
                        "the folder again.")
    return PurePosixPath(*kept)


def entry_count(zip_path: Path) -> int | None:
    """The number of entries the end-of-central-directory record declares (ZIP64 too), read from the file's tail
    before zipfile parses the central directory (300,000 entries took 195 MB and 5 s to parse); None when there is
    no such record (zipfile then says what is wrong)."""
    size = zip_path.stat().st_size
    with open(zip_path, "rb") as f:
        tail_len = min(size, 22 + 0xFFFF)  # the record, then a comment of at most 64 KiB
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
        count = struct.unpack("<H", tail[at + 10:at + 12])[0]
        if count != 0xFFFF or at < 20 or tail[at - 20:at - 16] != b"PK\x06\x07":
            return count
        zip64_at = struct.unpack("<Q", tail[at - 12:at - 4])[0]  # the ZIP64 record's offset, from its locator
        f.seek(zip64_at)
        record = f.read(56)
        if record[:4] != b"PK\x06\x06" or len(record) < 40:
            return count
        return struct.unpack("<Q", record[32:40])[0]


def too_big(zip_name: str, limits: ZipLimits) -> UserError:
    return UserError(f"{zip_name} would extract to more than {limits.max_total_bytes >> 20} MiB (or one file over "
                     f"{limits.max_file_bytes >> 20} MiB); refused as a possible zip bomb and nothing was extracted.",
                     "Check the zip; datasets are usually far smaller.")


def extract_members(zf: zipfile.ZipFile, zip_name: str, members, target: Path, limits: ZipLimits, packed: int) -> None:
    """Writes the members (private files) counting the bytes actually written against every limit: a header that
    lies about its size is a named error, never a traceback."""
    written = 0
    for info, rel in members:
        out = target.joinpath(*rel.parts)
        if not out.resolve().is_relative_to(target.resolve()):  # belt and braces after the checks above
            raise UserError(f"{zip_name}: {info.filename} leaves the folder; refused.")
        private_files.ensure_dir(out.parent)
        try:
            with zf.open(info) as src, private_files.open_file(out, "wb") as dst:
                left = info.file_size
                while chunk := src.read(1 << 20):
                    left -= len(chunk)
                    written += len(chunk)
                    if left < 0:  # the header lied about the size
                        raise UserError(f"{zip_name}: {info.filename} is larger than its header says; refused as "
                                        "a possible zip bomb and nothing was extracted.", "Create the zip again.")
                    if written > limits.max_total_bytes or info.file_size - left > limits.max_file_bytes:
                        raise too_big(zip_name, limits)
                    if written > limits.ratio_floor_bytes and written > limits.max_ratio * packed:
                        raise UserError(f"{zip_name}: {written >> 20} MiB written from {packed >> 10} KiB of "
                                        "compressed files so far; refused as a possible zip bomb and nothing was "
                                        "extracted.", "Check the zip; create it again from the real files.")
                    dst.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as err:
            raise UserError(f"{zip_name}: {info.filename} cannot be extracted ({err}): its entry header does not "
                            "match its data (a damaged zip, or one made to mislead); refused and nothing was "
                            "extracted.", "Create the zip again from the dataset folder.") from err
        ts = time.mktime(info.date_time + (0, 0, -1)) if info.date_time[0] >= 1980 else None
        if ts:
            os.utime(out, (ts, ts))
