"""A human progress bar on stderr, drawn only when stderr is a terminal (logs get the step= lines instead)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int = 0, enabled: bool = False, width: int = 30):
        self.total, self.enabled, self.width = max(total, 1), enabled, width
        self.t0, self.start = time.time(), start

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        done = int(self.width * step / self.total)
        rate = (step - self.start) / max(time.time() - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0
        sys.stderr.write(f"\r[{'#' * done}{'.' * (self.width - done)}] {step}/{self.total} loss {loss:.4f} "
                         f"{rate:.2f} it/s eta {int(eta) // 60}:{int(eta) % 60:02d} ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
