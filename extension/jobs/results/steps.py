"""The trainer's step lines (`step=120/1000 loss=0.0831 ...`, the trainer contract's stdout), read from either
backend's log: the local train.log or SageMaker's CloudWatch lines."""
from __future__ import annotations

import re

STEP_RE = re.compile(r"step=(\d+)/(\d+)(?:\s+loss=([0-9.eE+-]+|nan|inf))?")


def last_step(log_text: str) -> tuple[int, int, float | None]:
    """The last step line's (step, total, loss); (0, 0, None) before the first."""
    matches = list(STEP_RE.finditer(log_text))
    if not matches:
        return 0, 0, None
    m = matches[-1]
    loss = float(m.group(3)) if m.group(3) else None
    return int(m.group(1)), int(m.group(2)), loss
