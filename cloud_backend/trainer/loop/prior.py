"""DreamBooth prior preservation: when there are fewer class images than num_class_images, render the missing ones
from class_prompt with the base model (before any LoRA is added) into the job's cache folder."""
from __future__ import annotations

from pathlib import Path

from ..data import layout as layout_mod


def count_images(folders: list[Path]) -> int:
    n = 0
    for folder in folders:
        if folder.is_dir():
            n += sum(1 for p in folder.rglob("*") if p.suffix.lower() in layout_mod.IMAGE_EXTS)
    return n


def ensure_class_images(trainer, reg_dirs: list[Path], class_prompt: str) -> Path | None:
    """Returns the folder of generated class images (captioned with class_prompt), or None when none are needed."""
    cfg = trainer.cfg
    want = cfg.num_class_images
    have = count_images(reg_dirs)
    out = trainer.paths.cache / "class_images"
    generated = count_images([out])
    missing = want - have - generated
    if want <= 0 or (missing <= 0 and generated == 0):
        return None
    if missing > 0:
        if not class_prompt:
            from ..data.dataset import DatasetError
            raise DatasetError(f"num_class_images = {want} but only {have} class images exist and there is no "
                               "class_prompt to generate the rest: set class_prompt (e.g. \"a photo of a dog\") or "
                               "add class images (reg channel / reg_data_dir).")
        from . import sampling
        trainer.log(f"generating {missing} class images from '{class_prompt}' (prior preservation)")
        out.mkdir(parents=True, exist_ok=True)
        prompt = sampling.SamplePrompt(class_prompt, steps=25 if not trainer.components.tiny else 4)
        tmp = trainer.paths.cache / "class_images.partial"  # a render lands in the folder only when complete
        for i in range(generated, generated + missing):
            path = trainer.sample_base([prompt], tmp, f"class_{i:05d}", seed=cfg.seed + 7919 * (i + 1))[0]
            (out / f"class_{i:05d}.txt").write_text(class_prompt, encoding="utf-8")
            path.replace(out / f"class_{i:05d}.png")
        tmp.rmdir()
    return out
