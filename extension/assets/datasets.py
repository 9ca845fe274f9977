"""Datasets in the store: upload (validated, parallel, per-file dedupe, resumable), list, delete, usage.

Layout: datasets/<name>/<N_trigger>/<files> (plus the Kohya sample's config or JumpStart's dataset_info.json) and
datasets/<name>/manifest.json {name, family "", sha256 (of the sorted file list and hashes), size, file_count,
created, triggers, images, images_per_epoch, kind}. The manifest is written LAST, so a half-uploaded dataset never
lists as complete; a re-run sends only the files that are missing or changed. Uploading under an existing name
replaces that dataset, but never while another upload of other content to that name runs: the name is claimed
atomically first (claims.py), so two uploads never mix their files.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from cloudlora_backend.trainer.data import layout as L

from ..errors import UserError
from . import claims, transfer
from .dataset_check import Report, check_dataset
from .image_check import sha256_file
from .manifests import read_one
from .models import check_name, now_iso, safe_name

THREADS = 8


def manifest_key(name: str) -> str:
    return f"datasets/{name}/manifest.json"


def dataset_files(report: Report) -> list[tuple[str, Path]]:
    """(relative key, local path) of what gets uploaded: images, their captions and mask images, and the layout's
    own files.

    Only files the check accepted: nothing hidden, nothing outside the folder, no stray files.
    """
    root = Path(report.root)
    base = root.parent if report.kind == "kohya" and L.looks_like_subset(root) else root
    files: dict[str, Path] = {}
    for item in report.items:
        real_root = root.resolve()
        masks = [m for m in L.mask_images(Path(item["image"]))  # masked loss: <subset>/mask/<same stem>
                 if m.resolve().is_relative_to(real_root) and not m.is_symlink()]
        for p in (item["image"], item["caption_file"], *masks):
            if p:
                files[Path(p).relative_to(base).as_posix()] = Path(p)
    extra = [report.summary.get("config_file")] + (["dataset_info.json"] if report.kind == "jumpstart" else [])
    for rel in filter(None, extra):
        files[rel] = root / rel
    return sorted(files.items())


def dataset_sha256(hashes: list[tuple[str, str]]) -> str:
    """One hash for the whole dataset: of the sorted 'relative path  sha256' lines."""
    return hashlib.sha256("".join(f"{rel}  {sha}\n" for rel, sha in sorted(hashes)).encode()).hexdigest()


def check_or_raise(path: Path | str) -> Report:
    report = check_dataset(path)
    if not report.ok:
        shown = "\n".join(f.text() for f in report.errors[:10])
        more = f"\n... and {len(report.errors) - 10} more" if len(report.errors) > 10 else ""
        raise UserError(f"The dataset {path} has {len(report.errors)} error(s); nothing was uploaded:\n{shown}{more}",
                        f"Fix them, then check again: cloudlora dataset check {path}")
    return report


def upload_dataset(store, path: Path | str, name: str | None = None,
                   progress: transfer.ProgressCallback | None = None,
                   cancel: threading.Event | None = None, threads: int = THREADS) -> dict:
    """Validates, then uploads the dataset; returns its manifest plus bytes_sent, files_sent, files_skipped."""
    from . import dataset_import

    report = check_or_raise(path)
    root = Path(report.root)
    dataset_import.touch(root)  # an import being uploaded is in use: never cleaned away meanwhile
    asked = name
    name = check_name(name or safe_name(dataset_import.intended_name(root), "dataset"), "dataset")
    files = dataset_files(report)
    total = sum(p.stat().st_size for _rel, p in files)
    hasher = transfer.Meter(progress, "hashing", total, files_total=len(files))
    hashes = []
    for rel, p in files:
        if cancel is not None and cancel.is_set():
            raise transfer.Cancelled("cancelled")
        hashes.append((rel, sha256_file(p)))
        hasher.add(p.stat().st_size, item=rel, file_done=True)
    digest = dataset_sha256(hashes)
    old = _manifest_or_none(store, name)
    renamed_from = ""
    if not asked and old and old.get("sha256") != digest and old.get("source") != source_id(root):
        # A name nobody typed never replaces another dataset: the next free NAME-2, NAME-3 ..., and it is said.
        # The same folder uploaded again after an edit is that dataset's new version, not a collision.
        renamed_from = name
        name, old = _free_name(store, name, digest)
    if old and old.get("sha256") == digest:
        transfer.Meter(progress, "done", total, done=total, files_total=len(files)).emit()
        return {**old, "bytes_sent": 0, "files_sent": 0, "files_skipped": len(files), "deduplicated": True,
                **_renamed(renamed_from, name)}
    claim = claims.claim(store, "datasets", name, digest)  # atomic: no other content is sent to this name now
    try:
        result = _upload_claimed(store, report, name, files, hashes, digest, total, progress, cancel, threads)
    finally:
        claim.release()
    dataset_import.mark_uploaded(root)  # an import that reached the store is kept (clean_imports skips it)
    remember_folder(name, root)
    return {**result, **_renamed(renamed_from, name)}


def _folders_file() -> Path:
    from ..settings import data_dir

    return data_dir() / "dataset-folders.json"


def remember_folder(name: str, root: Path) -> None:
    """Notes on this machine (never in the store) which folder dataset `name` was uploaded from: a captioning job
    brings its captions back there (jobs/job_captions.py)."""
    from .. import private_files

    path = _folders_file()
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    known[name] = os.path.realpath(root)
    private_files.write_text(path, json.dumps(known, indent=1, sort_keys=True))


def local_folder(store, name: str) -> Path | None:
    """The folder on this machine that dataset `name`'s current version was uploaded from, or None."""
    try:
        known = json.loads(_folders_file().read_text(encoding="utf-8"))
        folder = Path(known[name]) if isinstance(known, dict) and isinstance(known.get(name), str) else None
    except (OSError, ValueError, KeyError):
        return None
    manifest = _manifest_or_none(store, name) or {}
    if folder is None or not folder.is_dir() or manifest.get("source") != source_id(folder):
        return None
    return folder


def source_id(root: Path) -> str:
    """Which folder on which machine a dataset came from, as a hash (the store never learns the local path): an
    upload of the same folder updates its dataset, one of another folder with the same name gets its own."""
    import socket

    where = f"{socket.gethostname()}\0{os.path.normcase(os.path.realpath(root))}"
    return hashlib.sha256(where.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _free_name(store, name: str, digest: str) -> tuple[str, dict | None]:
    """(NAME-N, its manifest): the first NAME-N that is free or holds this very content already."""
    for i in range(2, 1000):
        candidate = check_name(f"{name[:60]}-{i}", "dataset")
        old = _manifest_or_none(store, candidate)
        if old is None or old.get("sha256") == digest:
            return candidate, old
    raise UserError(f"Datasets {name}-2 to {name}-999 all exist.", "Give the dataset a name (--name NAME).")


def _renamed(renamed_from: str, name: str) -> dict:
    if not renamed_from:
        return {}
    return {"renamed_from": renamed_from,
            "rename_note": f"A dataset named '{renamed_from}' with other content is in the store already, so this one "
                           f"is '{name}'. To replace '{renamed_from}' instead, upload it with that name given."}


def _manifest_or_none(store, name: str) -> dict | None:
    return read_one(store, manifest_key(name))


def _upload_claimed(store, report: Report, name: str, files, hashes, digest: str, total: int, progress, cancel,
                    threads: int) -> dict:
    old = _manifest_or_none(store, name)  # again, now that the name is ours: another upload may have finished
    if old and old.get("sha256") == digest:
        transfer.Meter(progress, "done", total, done=total, files_total=len(files)).emit()
        return {**old, "bytes_sent": 0, "files_sent": 0, "files_skipped": len(files), "deduplicated": True}
    if old is not None:
        store.delete(manifest_key(name))  # being replaced: not complete until the new manifest lands

    meter = transfer.Meter(progress, "uploading", total, files_total=len(files))
    sha_of = dict(hashes)
    stop = threading.Event()

    # One listing instead of one request per file: only files already there with the same size need a look at
    # their hash (the next upload_file does it); the others are simply sent.
    present = {o.key: o.size for o in store.list(f"datasets/{name}/")}

    def send(rel: str, p: Path) -> transfer.UploadResult:
        if stop.is_set() or (cancel is not None and cancel.is_set()):
            raise transfer.Cancelled("cancelled")
        key = f"datasets/{name}/{rel}"
        res = transfer.upload_file(store, key, p, sha256=sha_of[rel], threads=2,
                                   skip_if_same=present.get(key) == p.stat().st_size)
        meter.add(res.size, item=rel, file_done=True)
        return res

    results = transfer.run_parallel(lambda item: send(*item), files, threads, stop, "cloudlora-dataset")
    wanted = {f"datasets/{name}/{rel}" for rel, _p in files}
    wanted |= {manifest_key(name), claims.claim_key("datasets", name)}
    for obj in list(store.list(f"datasets/{name}/")):  # files of an older version that are gone now
        if obj.key not in wanted:
            store.delete(obj.key)
    summary = report.summary
    manifest = {
        "name": name, "family": "", "sha256": digest, "size": total, "file_count": len(files), "created": now_iso(),
        "source": source_id(Path(report.root)),
        "triggers": summary["triggers"], "images": summary["images"],
        "images_per_epoch": summary["images_per_epoch"], "kind": report.kind, "subsets": summary["subsets"],
        "captions": summary["captions"], "config_file": summary.get("config_file"),
        "instance_prompt": summary.get("instance_prompt", ""), "class_prompt": summary.get("class_prompt", ""),
    }
    store.put_bytes(manifest_key(name), json.dumps(manifest, indent=2).encode())  # last: now it lists
    meter.emit("done")
    sent = [r for r in results if not r.skipped]
    return {**manifest, "bytes_sent": sum(r.bytes_sent for r in results), "files_sent": len(sent),
            "files_skipped": len(results) - len(sent), "deduplicated": False}


def list_datasets(store, broken: list | None = None) -> list[dict]:
    """Every complete dataset (one with a manifest), sorted by name; broken manifests are skipped (and appended
    to `broken`), never allowed to break the listing."""
    from .manifests import read_all

    return read_all(store, "datasets", broken)


def get_dataset(store, name: str) -> dict:
    try:
        return json.loads(store.get_bytes(manifest_key(check_name(name, "dataset"))))
    except FileNotFoundError:
        raise UserError(f"No dataset named '{name}' in the store ({store.uri('datasets/')}).",
                        "See `cloudlora dataset list`, or upload it with `cloudlora dataset upload PATH`.") from None
    except ValueError as err:
        raise UserError(f"The manifest of dataset '{name}' in the store is damaged ({err}).",
                        f"Upload the dataset again, or remove it: cloudlora dataset rm {name} --yes") from None


def delete_dataset(store, name: str, *, force: bool = False) -> int:
    """Removes the dataset (manifest first). `force` also clears a half-uploaded one that has no manifest."""
    check_name(name, "dataset")
    if not force:
        get_dataset(store, name)
    store.delete(manifest_key(name))
    return store.delete_prefix(f"datasets/{name}/")


def usage(store) -> int:
    return sum(o.size for o in store.list("datasets/"))


def usage_total(store) -> dict:
    """Bytes used in the store: models, datasets, everything."""
    from . import models

    m, d = models.usage(store), usage(store)
    return {"models": m, "datasets": d, "total": sum(o.size for o in store.list(""))}
