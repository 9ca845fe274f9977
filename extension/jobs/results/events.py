"""TensorBoard event files read without TensorBoard or TensorFlow: TFRecord framing + a minimal protobuf parse.

An events file is a sequence of records: uint64 length, uint32 masked CRC of the length, the payload, uint32
masked CRC of the payload. The payload is an `Event` protobuf:
    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; TensorProto tensor = 8; }
    TensorProto { DataType dtype = 1; bytes tensor_content = 4; repeated float float_val = 5 [packed];
                  repeated double double_val = 6 [packed]; }
torch's SummaryWriter.add_scalar writes simple_value; TF2-style writers put the scalar in `tensor`. A file that
is still being written may end in a partial record: reading stops there (the next read picks it up).
CRCs are not checked (a torn record fails to parse and is skipped instead).
"""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

LOSS_TAGS = ("loss/current", "loss/average", "loss/epoch_average", "loss", "loss/validation/current")
# The trainer's validation loss per epoch (step = epoch, as sd-scripts logs it; cloud_backend/trainer/loop/validation.py).
VALIDATION_EPOCH_TAG = "loss/validation/epoch_average"


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    value: float
    wall_time: float


def read_records(data: bytes) -> Iterator[bytes]:
    pos, n = 0, len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        end = start + length
        if end + 4 > n:
            return  # a record still being written
        yield data[start:end]
        pos = end + 4


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value): ints for varint/fixed, bytes for length-delimited."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos:pos + length]
            pos += length
        elif wire == 5:
            value = buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > n:
            raise ValueError("truncated message")
        yield number, wire, value


def _tensor_scalar(buf: bytes) -> float | None:
    dtype = 0
    content = b""
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = value
        elif number == 5:  # float_val: packed (wire 2) or single (wire 5)
            raw = value if wire == 2 else value
            if len(raw) >= 4:
                return struct.unpack_from("<f", raw)[0]
        elif number == 6:
            if len(value) >= 8:
                return struct.unpack_from("<d", value)[0]
    if content:
        if dtype == 1 and len(content) >= 4:  # DT_FLOAT
            return struct.unpack_from("<f", content)[0]
        if dtype == 2 and len(content) >= 8:  # DT_DOUBLE
            return struct.unpack_from("<d", content)[0]
        if dtype == 19 and len(content) >= 2:  # DT_HALF
            return struct.unpack_from("<e", content)[0]
    return None


def parse_event(payload: bytes) -> list[Scalar]:
    wall_time, step, summary = 0.0, 0, b""
    for number, wire, value in _fields(payload):
        if number == 1 and wire == 1:
            wall_time = struct.unpack("<d", value)[0]
        elif number == 2 and wire == 0:
            step = value if value < (1 << 63) else value - (1 << 64)
        elif number == 5 and wire == 2:
            summary = value
    out: list[Scalar] = []
    if not summary:
        return out
    for number, wire, value in _fields(summary):
        if number != 1 or wire != 2:
            continue
        tag, scalar = "", None
        for vn, vw, vv in _fields(value):
            if vn == 1 and vw == 2:
                tag = vv.decode("utf-8", "replace")
            elif vn == 2 and vw == 5:
                scalar = struct.unpack("<f", vv)[0]
            elif vn == 8 and vw == 2 and scalar is None:
                scalar = _tensor_scalar(vv)
        if tag and scalar is not None:
            out.append(Scalar(tag, step, float(scalar), wall_time))
    return out


# path -> (inode, bytes consumed, scalars so far): event files only grow, so a refresh reads just the new records.
_cache: dict[str, tuple[int, int, list[Scalar]]] = {}
_cache_lock = threading.Lock()


def _complete_length(data: bytes) -> int:
    pos, n = 0, len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from("<Q", data, pos)
        if pos + 12 + length + 4 > n:
            break
        pos += 12 + length + 4
    return pos


def _scalars_of(path: Path) -> list[Scalar]:
    key = str(path)
    try:
        st = path.stat()
    except OSError:
        return []
    with _cache_lock:
        inode, done, found = _cache.get(key, (st.st_ino, 0, []))
    if inode != st.st_ino or st.st_size < done:  # replaced or truncated: start over
        done, found = 0, []
    if st.st_size > done:
        with open(path, "rb") as f:
            f.seek(done)
            data = f.read()
        found = list(found)
        for payload in read_records(data):
            try:
                found.extend(parse_event(payload))
            except (ValueError, IndexError, struct.error):
                continue
        done += _complete_length(data)
        with _cache_lock:
            _cache[key] = (st.st_ino, done, found)
    return found


def read_scalars(paths: Iterable[Path]) -> list[Scalar]:
    """Every scalar in the given event files, sorted by (tag, step). Broken records are skipped."""
    out: list[Scalar] = []
    for path in paths:
        out.extend(_scalars_of(Path(path)))
    out.sort(key=lambda s: (s.tag, s.step, s.wall_time))
    return out


def event_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and "tfevents" in p.name)


def loss_points(folder: Path) -> list[dict]:
    """[{"step", "loss", "tag"}] for the loss tags found under `folder` (loss/current and loss/average first)."""
    scalars = read_scalars(event_files(folder))
    tags = {s.tag for s in scalars}
    wanted = [t for t in LOSS_TAGS if t in tags] or sorted(t for t in tags if t.startswith("loss"))
    return [{"step": s.step, "loss": s.value, "tag": s.tag} for s in scalars if s.tag in wanted]


def best_epoch(folder: Path) -> dict | None:
    """{"epoch", "loss", "last_epoch", "epochs": [{"epoch", "loss"}]}: the epoch with the lowest validation loss
    (the earliest of equals), or None when the job had no validation split."""
    scalars = [s for s in read_scalars(event_files(folder)) if s.tag == VALIDATION_EPOCH_TAG]
    if not scalars:
        return None
    latest = {s.step: s.value for s in scalars}  # a resumed run may log an epoch again: the last value counts
    epoch, value = min(latest.items(), key=lambda kv: (kv[1], kv[0]))
    return {"epoch": epoch, "loss": value, "last_epoch": max(latest),
            "epochs": [{"epoch": e, "loss": v} for e, v in sorted(latest.items())]}


# --- writing, for tests and for tools that need a tiny events file without TensorBoard -------------------------

def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def encode_scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    val = _ld(1, tag.encode()) + _encode_varint(2 << 3 | 5) + struct.pack("<f", value)
    summary = _ld(1, val)
    return (_encode_varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _encode_varint(2 << 3 | 0)
            + _encode_varint(step) + _ld(5, summary))


def frame_record(payload: bytes) -> bytes:
    """TFRecord framing (CRCs zero: this reader does not check them)."""
    return struct.pack("<Q", len(payload)) + b"\0\0\0\0" + payload + b"\0\0\0\0"
