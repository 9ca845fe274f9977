"""The CloudFormation stack: create or update it through a change set, follow its events, delete it.

Every step reports through `progress(message)`. A failure names the failed resource and CloudFormation's reason,
and when that reason is a missing permission, the fix names the permission.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import botocore.exceptions as bx

from ..errors import UserError
from .session import error_code

STACK_NAME = "cloudlora"
# Key prefix whose objects the bucket's lifecycle rule expires (ScratchExpirationDays): job checkpoints belong here,
# e.g. scratch/<job>/checkpoints/ (S3 lifecycle rules match prefixes only, so jobs/*/checkpoints cannot be expired).
SCRATCH_PREFIX = "scratch/"
Progress = Callable[[str], None]

_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed", "no changes")


def template_path() -> Path:
    import cloudlora_backend

    return Path(cloudlora_backend.__file__).resolve().parent / "infra" / "template.yaml"


def describe(cfn, stack_name: str = STACK_NAME) -> dict | None:
    """The stack, or None when it does not exist (or only a deleted one does)."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except bx.ClientError as err:
        if error_code(err) == "ValidationError" and "does not exist" in str(err):
            return None
        raise
    stack = stacks[0] if stacks else None
    if stack is None or stack.get("StackStatus") == "DELETE_COMPLETE":
        return None
    return stack


def outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


class _EventFollower:
    """Reports each new stack event once, oldest first. `prime()` first marks the events that already exist (earlier
    runs), so what is reported is this operation's, whatever the local clock says."""

    def __init__(self, cfn, stack_name: str, progress: Progress):
        self.cfn, self.stack_name, self.progress = cfn, stack_name, progress
        self.seen: set[str] = set()
        self.failures: list[dict] = []

    def _events(self) -> list[dict]:
        try:
            return self.cfn.describe_stack_events(StackName=self.stack_name).get("StackEvents", [])
        except bx.ClientError as err:
            if "does not exist" in str(err):
                return []
            raise

    def prime(self) -> "_EventFollower":
        self.seen.update(ev["EventId"] for ev in self._events())
        return self

    def poll(self) -> None:
        for ev in reversed(self._events()):  # the API lists newest first
            if ev["EventId"] in self.seen:
                continue
            self.seen.add(ev["EventId"])
            status = ev.get("ResourceStatus", "")
            reason = ev.get("ResourceStatusReason") or ""
            self.progress(f"stack: {ev.get('LogicalResourceId')} ({ev.get('ResourceType')}) {status}"
                          + (f": {reason}" if reason else ""))
            if status.endswith("_FAILED") and reason and "cancelled" not in reason.lower():
                self.failures.append(ev)


_PERM_RE = re.compile(r"not authorized to perform:? ([A-Za-z0-9-]+:[A-Za-z0-9*]+)")


def failure_error(what: str, failures: list[dict], status: str) -> UserError:
    if not failures:
        return UserError(f"{what} failed (stack status {status}).",
                         f"See the stack events in the CloudFormation console (stack '{STACK_NAME}').")
    first = failures[0]
    reason = first.get("ResourceStatusReason", "")
    message = (f"{what} failed at {first.get('LogicalResourceId')} ({first.get('ResourceType')}): {reason}")
    m = _PERM_RE.search(reason)
    if m:
        fix = (f"Give your IAM user or role the permission {m.group(1)} (cloud_backend/infra/user-policy.json lists "
               "every permission setup needs), then run `cloudlora setup` again.")
    elif "AlreadyExists" in reason or "already exists" in reason:
        fix = ("A resource with that name exists outside the stack (e.g. left from an earlier install). Delete it or "
               "set another prefix, then run `cloudlora setup` again.")
    else:
        fix = "Fix the cause named above, then run `cloudlora setup` again (it resumes where it stopped)."
    return UserError(message, fix)


def _wait_stack(cfn, stack_name: str, follower: _EventFollower, poll_s: float, timeout_s: float,
                what: str, *, deleting: bool = False) -> dict | None:
    deadline = time.monotonic() + timeout_s
    while True:
        follower.poll()
        stack = describe(cfn, stack_name)
        if stack is None:
            if deleting:
                return None
            raise UserError(f"{what}: the stack '{stack_name}' disappeared.", "Run `cloudlora setup` again.")
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            follower.poll()
            if status in _DONE_OK and not deleting:
                return stack
            raise failure_error(what, follower.failures, status)
        if time.monotonic() > deadline:
            raise UserError(f"{what} is still {status} after {timeout_s / 60:.0f} minutes.",
                            "Watch it in the CloudFormation console; run `cloudlora setup` again when it is done.")
        time.sleep(poll_s)


def deploy(cfn, progress: Progress, *, template_body: str | None = None, stack_name: str = STACK_NAME,
           parameters: dict[str, str] | None = None, poll_s: float = 5.0, timeout_s: float = 1800) -> dict:
    """Creates or updates the stack via a change set (its changes are reported first); returns the stack outputs."""
    body = template_body if template_body is not None else template_path().read_text(encoding="utf-8")
    stack = describe(cfn, stack_name)
    if stack is not None and stack["StackStatus"].endswith("_IN_PROGRESS"):
        progress(f"stack: {stack_name} is {stack['StackStatus']}; waiting for it to settle")
        follower = _EventFollower(cfn, stack_name, progress).prime()
        try:
            stack = _wait_stack(cfn, stack_name, follower, poll_s, timeout_s, "The running stack operation")
        except UserError:
            stack = describe(cfn, stack_name)
    if stack is not None and stack["StackStatus"] in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"):
        # A stack whose creation failed cannot be updated; it holds no resources, so replace it.
        progress(f"stack: {stack_name} is {stack['StackStatus']} after a failed creation; deleting it first")
        follower = _EventFollower(cfn, stack_name, progress).prime()
        cfn.delete_stack(StackName=stack_name)
        _wait_stack(cfn, stack_name, follower, poll_s, timeout_s,
                    "Deleting the failed stack", deleting=True)
        stack = None
    change_type = "CREATE" if stack is None else "UPDATE"
    name = f"cloudlora-{int(time.time())}"
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()]
    progress(f"stack: {'creating' if stack is None else 'updating'} {stack_name} (change set {name})")
    cs = cfn.create_change_set(StackName=stack_name, ChangeSetName=name, ChangeSetType=change_type,
                               TemplateBody=body, Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=params,
                               Tags=[{"Key": "cloudlora:stack", "Value": stack_name}])
    cs_id = cs["Id"]
    deadline = time.monotonic() + 600
    while True:
        desc = cfn.describe_change_set(ChangeSetName=cs_id, StackName=stack_name)
        status = desc.get("Status", "")
        if status in ("CREATE_COMPLETE", "FAILED") or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    if status == "FAILED":
        reason = desc.get("StatusReason", "")
        if any(s.lower() in reason.lower() for s in _NO_CHANGES):
            progress("stack: up to date (no changes)")
            cfn.delete_change_set(ChangeSetName=cs_id, StackName=stack_name)
            return outputs(describe(cfn, stack_name) or {})
        raise UserError(f"CloudFormation rejected the change set: {reason}",
                        "Fix the cause named above and run `cloudlora setup` again.")
    for change in desc.get("Changes", []):
        rc = change.get("ResourceChange", {})
        replace = " (replacement)" if rc.get("Replacement") == "True" else ""
        progress(f"change: {rc.get('Action')} {rc.get('LogicalResourceId')} ({rc.get('ResourceType')}){replace}")
    follower = _EventFollower(cfn, stack_name, progress).prime()
    cfn.execute_change_set(ChangeSetName=cs_id, StackName=stack_name)
    stack = _wait_stack(cfn, stack_name, follower, poll_s, timeout_s,
                        "Creating the stack" if change_type == "CREATE" else "Updating the stack")
    progress(f"stack: {stack_name} {stack['StackStatus']}")
    return outputs(stack)


def delete(cfn, progress: Progress, *, stack_name: str = STACK_NAME, poll_s: float = 5.0,
           timeout_s: float = 1800) -> None:
    follower = _EventFollower(cfn, stack_name, progress).prime()
    cfn.delete_stack(StackName=stack_name)
    _wait_stack(cfn, stack_name, follower, poll_s, timeout_s, "Deleting the stack", deleting=True)
    progress(f"stack: {stack_name} deleted")
