"""Atomic name claims in the store, so that two uploads under one name never both go ahead.

Before an upload sends anything it claims `<models|datasets>/<name>/.claim` holding the content's SHA-256, with a
create-only-if-absent write (If-None-Match: * on S3, a hard link locally): of two racing uploads exactly one creates
it. An upload of the same content may go on beside the claim (it writes the same bytes, and this machine's uploads of
one object wait for each other); one of other content is refused with the name of the fix. The claim is released
once the manifest is written (the manifest then guards the name) or when the upload fails or is cancelled. A claim
left by a killed upload is cleared by uploading the same content again, or by `cloudlora model|dataset rm NAME`.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from ..errors import UserError
from ..store.base import AlreadyExists
from .manifests import read_one

CLAIM = ".claim"


def claim_key(kind: str, name: str) -> str:
    return f"{kind}/{name}/{CLAIM}"


@dataclass
class Claim:
    store: object
    key: str
    sha256: str
    owned: bool  # we created it (else another upload of the same content holds it)

    def release(self) -> None:
        """Removes the claim if it is still one for this content (never another upload's claim)."""
        held = read_one(self.store, self.key)
        if held is not None and held.get("sha256") == self.sha256:
            self.store.delete(self.key)


def claim(store, kind: str, name: str, sha256: str) -> Claim:
    """Claims `name` for content `sha256`; UserError when an upload of other content holds it."""
    noun = "model" if kind == "models" else "dataset"
    key = claim_key(kind, name)
    body = json.dumps({"sha256": sha256, "host": socket.gethostname(), "pid": os.getpid(),
                       "started": time.time()}).encode()
    for _ in range(5):
        try:
            store.put_bytes(key, body, if_absent=True)
            return Claim(store, key, sha256, owned=True)
        except AlreadyExists:
            held = read_one(store, key)
        if held is None:
            continue  # released between the two looks: try again
        if held.get("sha256") == sha256:
            return Claim(store, key, sha256, owned=False)
        started = held.get("started")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if isinstance(started, (int, float)) else "?"
        raise UserError(
            f"Another upload under the {noun} name '{name}' (other content, started {when} on "
            f"{held.get('host', '?')}, pid {held.get('pid', '?')}) is running or was interrupted; nothing was "
            "uploaded, so neither upload is lost.",
            f"Give this {noun} another name, or wait for that upload to finish. If it was interrupted, upload that "
            f"same file again to finish it, or clear it: cloudlora {noun} rm {name} --yes")
    raise UserError(f"The {noun} name '{name}' could not be claimed in {store.uri(key)}: it keeps changing.",
                    "Try again in a moment.")
