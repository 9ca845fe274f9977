"""SageMaker Service Quotas by name: how many training instances of a type this account may run.

New accounts often have a quota of 0 for GPU training instances, the first wall users hit; Service Quotas tells
before a job fails. Quotas are looked up by their name ("ml.g5.2xlarge for training job usage") since the codes
(L-...) differ per quota and are not documented as stable; the code comes back with the value for the fix command.
"""
from __future__ import annotations

from dataclasses import dataclass

SERVICE_CODE = "sagemaker"


@dataclass(frozen=True)
class Quota:
    name: str
    code: str
    value: float
    default: bool  # True when only AWS's default is known (no applied value listed for this account)

    def increase_command(self, region: str, desired: int = 1) -> str:
        return (f"aws service-quotas request-service-quota-increase --service-code {SERVICE_CODE} "
                f"--quota-code {self.code} --desired-value {desired} --region {region}")

    def console_url(self, region: str) -> str:
        return (f"https://{region}.console.aws.amazon.com/servicequotas/home/services/{SERVICE_CODE}"
                f"/quotas/{self.code}")


def training_quota_name(instance_type: str, *, spot: bool = False) -> str:
    return f"{instance_type} for {'spot ' if spot else ''}training job usage"


def _all_quotas(sq_client, operation: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    paginator = sq_client.get_paginator(operation)
    for page in paginator.paginate(ServiceCode=SERVICE_CODE):
        for q in page.get("Quotas", []):
            found[q.get("QuotaName", "")] = q
    return found


class QuotaBook:
    """All SageMaker quotas of one account and region, fetched once (two paginated lists) and looked up by name."""

    def __init__(self, sq_client):
        self._client = sq_client
        self._applied: dict[str, dict] | None = None
        self._defaults: dict[str, dict] | None = None

    def find(self, name: str) -> Quota | None:
        if self._applied is None:
            self._applied = _all_quotas(self._client, "list_service_quotas")
        q = self._applied.get(name)
        if q is not None:
            return Quota(name, q["QuotaCode"], float(q.get("Value", 0)), False)
        # Some quotas have no applied value listed; then AWS's default is what the account has.
        if self._defaults is None:
            self._defaults = _all_quotas(self._client, "list_aws_default_service_quotas")
        q = self._defaults.get(name)
        if q is not None:
            return Quota(name, q["QuotaCode"], float(q.get("Value", 0)), True)
        return None

    def training(self, instance_type: str, *, spot: bool = False) -> Quota | None:
        return self.find(training_quota_name(instance_type, spot=spot))
