"""Manifests read from the store for a listing: a broken one (not JSON, wrong types, a name that is not a name, a
number no JSON encoder or browser can hold) is skipped and reported, so no record in the store can stop a listing,
a REST answer or the UI from loading (orjson refuses integers beyond 64 bits; a browser loses precision past 2^53).
"""
from __future__ import annotations

import json
import logging
import math
import re

# No Windows device name (CON, NUL, COM1.x, ...: a device, not a folder) and no trailing dot (Windows strips it).
DEVICE_NAME = r"(?!(?i:con|prn|aux|nul|com[1-9]|lpt[1-9])(?:[. ]|$))"
NAME_RE = re.compile(rf"^{DEVICE_NAME}[A-Za-z0-9][A-Za-z0-9._-]{{0,99}}(?<!\.)$")

log = logging.getLogger(__name__)

MAX_SAFE_INT = 2 ** 53  # the largest integer every JSON reader (a browser's too) holds exactly
COUNTS = ("size", "file_count", "images", "images_per_epoch", "captions")
STRINGS = ("name", "family", "sha256", "created", "kind", "file")


def json_problem(value, where: str = "", depth: int = 0) -> str | None:
    """What makes `value` unsafe to send as JSON, or None."""
    if depth > 32:
        return f"{where or 'the record'} is nested too deeply"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return f"{where or 'a number'} is {len(str(abs(value)))} digits long" if abs(value) > MAX_SAFE_INT else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where or 'a number'} is {value}"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = json_problem(item, f"{where}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            problem = json_problem(item, f"{where}.{k}" if where else str(k), depth + 1)
            if problem:
                return problem
        return None
    return f"{where or 'a value'} is not JSON"


def manifest_problem(data, kind: str, name: str) -> str | None:
    """Why a model's or dataset's manifest cannot be listed, or None."""
    if not isinstance(data, dict):
        return "it is not a JSON object"
    problem = json_problem(data)
    if problem:
        return problem
    if data.get("name") != name or not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return f"its name {data.get('name')!r} is not the folder's ({name!r})"
    for key in COUNTS:
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0):
            return f"{key} is {data[key]!r}, not a count"
    for key in STRINGS:
        if key in data and data[key] is not None and not isinstance(data[key], str):
            return f"{key} is {data[key]!r}, not text"
    if kind == "datasets" and not all(isinstance(t, str) for t in data.get("triggers") or []):
        return "its triggers are not all text"
    return None


def read_one(store, key: str) -> dict | None:
    """One JSON record of the store (a manifest, a claim): None when there is none, {} when it cannot be read."""
    try:
        data = json.loads(store.get_bytes(key))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except ValueError:
        return {}


def read_all(store, kind: str, broken: list | None = None) -> list[dict]:
    """Every listable manifest under `kind`/ ("models" | "datasets"), sorted by name; each broken one is logged and
    appended to `broken` as {"key", "problem"}."""
    out = []
    for obj in store.list(f"{kind}/"):
        parts = obj.key.split("/")
        if len(parts) != 3 or parts[2] != "manifest.json":
            continue
        try:
            data = json.loads(store.get_bytes(obj.key))
        except FileNotFoundError:
            continue  # deleted meanwhile
        except ValueError as err:
            data, problem = None, f"it is not valid JSON ({err})"
        else:
            problem = manifest_problem(data, kind, parts[1])
        if problem:
            log.warning("cloudlora: skipped the broken record %s: %s", store.uri(obj.key), problem)
            if broken is not None:
                broken.append({"key": obj.key, "problem": problem})
            continue
        out.append(data)
    return sorted(out, key=lambda m: m.get("name", ""))


def broken_text(broken: list[dict], noun: str) -> str:
    """One line for a listing: how many records were skipped, naming the first and the fix."""
    if not broken:
        return ""
    first = broken[0]
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    name = first["key"].split("/")[1]
    return (f"Skipped {len(broken)} broken {noun} record(s): {first['key']}: {first['problem']}{more}. "
            f"Upload it again, or remove it: cloudlora {noun} rm {name} --yes")
