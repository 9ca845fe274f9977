"""The object store: S3 (any endpoint) or a local folder, behind one interface.

Key layout (the same in both; documented in docs/store-layout.md):
    models/<name>/<file>            checkpoint, byte for byte; models/<name>/manifest.json
    datasets/<name>/<N_trigger>/... dataset files;           datasets/<name>/manifest.json
    jobs/<job id>/...               job record (job.json), config, outputs, logs
"""
from __future__ import annotations

from .. import private_files
from ..settings import Settings
from .base import ObjectInfo, ObjectStore, ProgressFn
from .local import LocalStore


def open_store(settings: Settings) -> ObjectStore:
    """S3 when a bucket is configured, else the local folder."""
    if settings.bucket:
        from .s3 import S3Store  # boto3 only when needed

        return S3Store.from_settings(settings)
    return LocalStore(private_files.ensure_dir(settings.effective_store_dir))  # the user's photos: 0700


__all__ = ["ObjectInfo", "ObjectStore", "ProgressFn", "LocalStore", "open_store"]
