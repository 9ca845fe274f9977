"""What the surrounding host offers (A1111, Forge, or nothing when standalone), as plain callables.

The WebUI glue (`webui.py`) installs an A1111/Forge host at start-up; everything else asks `current()` and
never imports `modules.*` itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Host:
    name: str = "standalone"  # "a1111" | "forge" | "standalone"
    lora_dir: Callable[[], Path] | None = None  # honours --lora-dir
    list_checkpoints: Callable[[bool], list[tuple[str, str]]] | None = None  # (refresh) -> [(title, filename)]
    checkpoint_dir: Callable[[], Path] | None = None  # where fetched base models land (honours --ckpt-dir)
    refresh_loras: Callable[[], None] | None = None  # makes a new LoRA show in the Lora tab
    interrogate: Callable[[Any], str] | None = None  # PIL image -> caption (the WebUI's interrogator)
    # The WebUI's own txt2img with the checkpoint the user has loaded: (Txt2Img) -> PIL image (jobs/results/epoch_grid.py).
    txt2img: Callable[[Any], Any] | None = None
    loaded_model: Callable[[], dict] | None = None  # {"title": str, "family": "sd15" | "sdxl" | "sd2" | ""}

    @property
    def in_webui(self) -> bool:
        return self.name != "standalone"


_current = Host()


def current() -> Host:
    return _current


def install(host: Host) -> None:
    global _current
    _current = host
