"""The Lora folders of WebUIs installed on this machine (A1111, Forge, ComfyUI), offered in the standalone app's
Connection panel so a finished LoRA lands where the user's image generator reads it.

Looked for where people put them: the home folder and its Desktop/Documents/Downloads, a few common parents, and the
top of each Windows drive, one level down; inside each, the install itself or its one-click wrapper (Forge's
`webui_forge_*/webui`, ComfyUI's `ComfyUI_windows_portable/ComfyUI`). Only folder names are read, never file contents.
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path

from .. import system

PARENTS = ("", "Desktop", "Documents", "Downloads", "AI", "ai", "apps", "git", "src", "code", "stable-diffusion")
WRAPPERS = ("", "webui", "ComfyUI", "stable-diffusion-webui")


@dataclass(frozen=True)
class Found:
    kind: str  # "A1111" | "Forge" | "ComfyUI"
    path: Path  # its Lora folder (may not exist yet in a fresh install)

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.path}"


def kind_of(folder: Path) -> str:
    """"Forge", "A1111", "ComfyUI" or "" from the install's own folders and files."""
    try:
        if (folder / "modules_forge").is_dir():
            return "Forge"
        if (folder / "webui.py").is_file() and (folder / "modules").is_dir():
            return "A1111"
        if (folder / "comfy").is_dir() and (folder / "main.py").is_file():
            return "ComfyUI"
    except OSError:
        pass
    return ""


def lora_folder(folder: Path, kind: str) -> Path:
    return folder / "models" / ("loras" if kind == "ComfyUI" else "Lora")


def _roots(home: Path) -> list[Path]:
    roots = [home / p if p else home for p in PARENTS]
    if system.WINDOWS:  # one-click packages are often unpacked at the top of a drive
        roots += [Path(f"{d}:\\") for d in string.ascii_uppercase if Path(f"{d}:\\").exists()]
    return roots


def detect(roots: list[Path] | None = None) -> list[Found]:
    """The Lora folders of the installs found under `roots` (default: the usual places), without duplicates."""
    found: list[Found] = []
    seen: set[str] = set()
    for root in roots if roots is not None else _roots(Path.home()):
        try:
            children = [root, *sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]
        except OSError:
            continue
        for child in children[:200]:  # a huge folder is not where an install lives: look no further
            for wrapper in WRAPPERS:
                folder = child / wrapper if wrapper else child
                kind = kind_of(folder)
                if not kind:
                    continue
                lora = lora_folder(folder, kind)
                key = os.path.normcase(str(lora.resolve()))
                if key not in seen:
                    seen.add(key)
                    found.append(Found(kind, lora))
    return found
