"""The backend of a job, by the spec's backend name: each is a module with the functions of the interface in
backend_interface.py. The SageMaker one is imported on first use: boto3 is slow to import, and the local runner and
the CLI start fast without it."""
from __future__ import annotations

from .backend_interface import Backend, Inputs, InputsFor, Live  # noqa: F401  (the lifecycle's names for them)

NAMES = ("local", "sagemaker")


def of(name: str) -> Backend:
    """The backend module of a spec's backend name ("local" or "sagemaker")."""
    if name == "local":
        from .local_backend import backend
    elif name == "sagemaker":
        from .sagemaker_backend import backend
    else:
        raise ValueError(f"unknown backend {name!r}")
    return backend  # type: ignore[return-value]  (a module with the Backend functions)
