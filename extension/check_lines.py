"""The doctor's lines and the context its checks share; below both the doctor and the AWS checks, so neither imports the other."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .settings import Settings

STATUSES = ("ok", "problem", "warn", "skip")


@dataclass
class Check:
    name: str
    status: str  # "ok" | "problem" | "warn" | "skip"
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckContext:
    """What the checks share: later AWS checks reuse the session and the caller identity of the first."""

    settings: Settings
    instance_types: list[str]
    session: object = None
    identity: dict | None = None
    region: str = ""
    clients: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)  # trainer_env.status(): torch/cuda/gpu of the trainer's Python

    def client(self, service: str):
        if service not in self.clients:
            from .aws.session import client

            self.clients[service] = client(self.settings, service, session=self.session, fast=True,
                                           region=self.region or None)
        return self.clients[service]


def short_error(err: BaseException) -> str:
    """One line, at most 160 characters (errors can carry whole HTML pages)."""
    text = " ".join(str(err).split())
    return text if len(text) < 160 else text[:157] + "..."
