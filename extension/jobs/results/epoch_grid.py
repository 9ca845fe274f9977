"""Compare a finished job's epochs: an X/Y grid of epoch files x LoRA weights on the job's sample prompts. Inside
A1111/Forge it is rendered by the host's txt2img with the checkpoint the user has loaded; in the standalone app by
the trainer's own pipeline with the job's base model, in the trainer environment (epoch_grid_trainer.py).

What a user sees in the grid is what they will get in txt2img: the same sampler, VAE, precision and Lora extension
(peer trainers render samples with their own pipeline, which often differs from the WebUI). Each epoch file is put
into the Lora folder for the render under a unique name (`cloudlora_<job>_e<N>`, in `_cloudlora_epochs/`, with
ss_output_name set to it so no alias can shadow another LoRA), used as `<lora:NAME:WEIGHT>`, and removed again.
The grid goes beside the LoRA, `<lora name>.epochs.png` (not a preview name A1111 picks up), and shows in the
Train tab. A WebUI without host.txt2img refuses it (the trainer's own samples stay).

One grid per job at a time, in a background thread (never the UI thread); `status(job_id)` is what the tab, REST
and tests poll.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ... import background, host
from ...errors import UserError

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = (0.6, 0.8, 1.0)
TEMP_FOLDER = "_cloudlora_epochs"
# sd-scripts' sample_sampler names -> the WebUI's sampler names (A1111 1.10 / Forge sd_samplers).
SAMPLERS = {"ddim": "DDIM", "pndm": "PLMS", "lms": "LMS", "k_lms": "LMS", "euler": "Euler", "k_euler": "Euler",
            "euler_a": "Euler a", "k_euler_a": "Euler a", "heun": "Heun", "dpm_2": "DPM2", "k_dpm_2": "DPM2",
            "dpm_2_a": "DPM2 a", "k_dpm_2_a": "DPM2 a", "dpmsolver": "DPM++ 2M", "dpmsolver++": "DPM++ 2M",
            "dpmsingle": "DPM++ 2S a"}
MAX_CELLS = 60


@dataclass
class Txt2Img:
    """One render request for host.txt2img."""
    prompt: str
    negative: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = 42
    sampler: str = "Euler a"


@dataclass
class GridState:
    job_id: str
    status: str = "idle"  # idle | running | done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    grid: str = ""  # the grid PNG beside the LoRA
    epochs: list = field(default_factory=list)  # [{"label", "file"}] in grid order (rows)
    weights: list = field(default_factory=list)  # grid columns
    renderer: str = ""  # "webui" (host txt2img) | "trainer" (the standalone app)

    def as_dict(self) -> dict:
        return asdict(self)


_states: dict[str, GridState] = {}
_lock = threading.Lock()


def available() -> bool:
    """Inside a WebUI: with its txt2img. Standalone: always (the trainer renders)."""
    h = host.current()
    return h.txt2img is not None or not h.in_webui


def renderer() -> str:
    return "webui" if host.current().in_webui else "trainer"


def status(job_id: str, settings=None) -> dict:
    """The job's grid: the one rendering or rendered in this session, else a grid file left beside its LoRA."""
    with _lock:
        state = _states.get(job_id)
    if state is not None:
        return state.as_dict()
    out = GridState(job_id)
    try:
        from ...library.pull import lora_dir
        from ..job_store import get_record, open_job_store, resolve_settings

        settings = resolve_settings(settings)
        rec = get_record(open_job_store(settings), job_id)
        grid = lora_dir(settings) / f"{_pulled_stem(rec)}.epochs.png"
        if grid.is_file():
            out.status, out.grid, out.message = "done", str(grid), f"{grid.name} (rendered earlier)"
    except UserError:
        pass
    return out.as_dict()


def parse_weights(text) -> list[float]:
    """'0.6, 0.8, 1.0' -> [0.6, 0.8, 1.0]. Raises UserError."""
    items = text if isinstance(text, (list, tuple)) else [t for t in re.split(r"[,\s]+", str(text or "")) if t]
    try:
        weights = [float(w) for w in items]
    except ValueError as err:
        raise UserError(f"LoRA weights '{text}' are not numbers.", "Write them like 0.6, 0.8, 1.0.") from err
    if not weights or len(weights) > 8 or any(not -4 <= w <= 4 for w in weights):
        raise UserError(f"LoRA weights '{text}': give 1 to 8 weights between -4 and 4.", "E.g. 0.6, 0.8, 1.0.")
    return weights


def epoch_files(lora_files: list[Path], lora_name: str) -> list[tuple[str, Path]]:
    """[(label, file)] oldest epoch first: NAME-000002.safetensors as 'epoch 2', the final file last as 'final'."""
    numbered, final = [], None
    for p in lora_files:
        m = re.fullmatch(re.escape(lora_name) + r"-(\d{6})", p.stem)
        if m:
            numbered.append((int(m.group(1)), p))
        elif p.stem == lora_name:
            final = p
    out = [(f"epoch {n}", p) for n, p in sorted(numbered)]
    if final is not None:
        out.append(("final", final))
    return out


def prompts_for(config_text: str, family: str, triggers: list[str], search_dirs: list[Path]) -> list[Txt2Img]:
    """The job's sample prompts (Kohya lines; a prompts file is looked up in search_dirs), else its trigger words."""
    from cloudlora_backend.trainer.config import train_config as kohya_config
    from cloudlora_backend.trainer.config.prompt_lines import PromptError, read_prompts

    try:
        cfg = kohya_config.parse(config_text or "", family)
    except kohya_config.ConfigError:
        cfg = kohya_config.parse("", family)
    w, h = cfg.resolution_wh
    sampler = SAMPLERS.get(cfg.sample_sampler, "Euler a")
    try:
        lines = read_prompts(cfg.sample_prompt_text, search_dirs)
    except PromptError:
        lines = []
    if not lines:
        text = ", ".join(t for t in triggers if t) or "a photo"
        return [Txt2Img(text, width=w, height=h, seed=cfg.seed, sampler=sampler)]
    return [Txt2Img(sp.prompt, sp.negative, sp.width or w, sp.height or h, sp.steps, sp.cfg_scale,
                    sp.seed if sp.seed is not None else cfg.seed + i, sampler) for i, sp in enumerate(lines)]


def start(job_id: str, weights=DEFAULT_WEIGHTS, settings=None) -> dict:
    """Checks what can be checked at once, then renders in the background; returns status(job_id)."""
    from . import outputs
    from ..job_store import get_record, open_job_store, resolve_settings

    if not available():
        raise UserError(f"Comparing epochs inside {host.current().name} needs its txt2img, which this WebUI does "
                        "not offer to extensions.",
                        "Use the standalone app (`cloudlora ui`), where the trainer renders the comparison; the "
                        "trainer's own samples are in the job panel.")
    weights = parse_weights(weights)
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    rec = get_record(store, job_id)
    if rec.status != "Completed":
        raise UserError(f"The job '{job_id}' is {rec.status}: its epochs can be compared once it is Completed.",
                        "Wait for it to complete.")
    if renderer() == "trainer" and rec.spec.family not in ("sd15", "sdxl"):
        raise UserError(f"The standalone app compares SD 1.5 and SDXL epochs; this job is {rec.spec.family}.",
                        "Compare it inside Forge (its txt2img renders it), or judge the job's own samples.")
    from ...library.pull import lora_files

    files = epoch_files(lora_files(outputs.model_dir(rec, settings)), rec.spec.lora_name)
    if not files:
        raise UserError(f"The job '{job_id}' has no LoRA files to compare.", "Look at its outputs (`cloudlora job show`).")
    loaded = host.current().loaded_model() if host.current().loaded_model else {}
    family = loaded.get("family") or ""
    if family and family != rec.spec.family:
        labels = {"sd15": "SD 1.5", "sdxl": "SDXL", "sd2": "SD 2", "flux": "FLUX.1"}
        raise UserError(f"The WebUI has an {labels.get(family, family)} checkpoint loaded "
                        f"({loaded.get('title') or 'unnamed'}), but this LoRA is {labels.get(rec.spec.family)}.",
                        f"Load an {labels.get(rec.spec.family)} checkpoint in the WebUI (top left), then compare.")
    search = [Path(rec.local_dir) / "input" / "data" / d for d in ("config", "dataset")] if rec.local_dir else []
    prompts = prompts_for(rec.spec.config, rec.spec.family, rec.triggers, search)
    cells = len(files) * len(weights) * len(prompts)
    if cells > MAX_CELLS:
        raise UserError(f"That grid would be {cells} images ({len(files)} epochs x {len(weights)} weights x "
                        f"{len(prompts)} prompts).", f"Use fewer weights (at most {MAX_CELLS} images per grid).")
    with _lock:
        state = _states.get(job_id)
        if state and state.status == "running":
            return state.as_dict()
        state = GridState(job_id, "running", 0, cells, "starting", "",
                          [{"label": label, "file": p.name} for label, p in files], list(weights), renderer())
        _states[job_id] = state
    background.start(f"epoch-grid-{job_id}", _run, state, rec, files, weights, prompts, settings)
    return state.as_dict()


def _run(state: GridState, rec, files, weights, prompts, settings) -> None:
    from ...library import pull as lib

    try:
        if state.renderer == "trainer":
            from . import epoch_grid_trainer

            images = epoch_grid_trainer.render(state, rec, files, weights, prompts, settings)
        else:
            images = _render_txt2img(state, rec, files, weights, prompts, settings)
        out = lib.lora_dir(settings) / f"{_pulled_stem(rec)}.epochs.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        compose([label for label, _ in files], weights, [p.prompt for p in prompts], images).save(out)
        state.grid, state.status, state.message = str(out), "done", f"saved {out.name} beside the LoRA"
    except Exception as err:  # the tab shows it; the background thread has no caller
        log.exception("cloudlora: epoch grid of %s failed", rec.id)
        state.status, state.message = "failed", (err.message if isinstance(err, UserError) else str(err))


def _render_txt2img(state: GridState, rec, files, weights, prompts, settings) -> list:
    """images[prompt][epoch][weight] from the WebUI's txt2img, each epoch file borrowed by the Lora folder."""
    from ...library import pull as lib

    lora_dir = lib.lora_dir(settings)
    temp = lora_dir / TEMP_FOLDER
    temp.mkdir(parents=True, exist_ok=True)
    names = []
    try:
        for i, (_label, src) in enumerate(files):
            name = f"cloudlora_{rec.id}_e{i}".replace("-", "_")
            lib.copy_with_metadata(src, temp / f"{name}.safetensors", {"ss_output_name": name})
            names.append(name)
        lib.refresh()
        images = []
        for p_index, prompt in enumerate(prompts):
            rows = []
            for name in names:
                row = []
                for w in weights:
                    state.message = f"rendering {state.done + 1}/{state.total}"
                    job = Txt2Img(**{**asdict(prompt), "prompt": f"{prompt.prompt} <lora:{name}:{w:g}>"})
                    row.append(host.current().txt2img(job))
                    state.done += 1
                rows.append(row)
            images.append(rows)
        return images
    finally:
        for name in names:  # the epoch files were only borrowed by the Lora folder
            try:
                (temp / f"{name}.safetensors").unlink(missing_ok=True)
            except OSError:  # held open (Windows: the WebUI's loader, an antivirus): the others still go
                log.warning("cloudlora: could not remove %s from the Lora folder", temp / f"{name}.safetensors")
        try:
            temp.rmdir()
        except OSError:  # another grid is rendering (or something else is in there): leave the folder
            pass
        lib.refresh()


def _pulled_stem(rec) -> str:
    finals = [p for p in rec.pulled if p.get("final", True) and p.get("file")]
    return Path(finals[-1]["file"]).stem if finals else rec.spec.lora_name


def compose(row_labels: list[str], weights: list[float], prompts: list[str], images: list):
    """One PNG: per prompt a block of rows (epochs) x columns (weights), labelled, prompts stacked."""
    from PIL import Image, ImageDraw

    cell_w = max(im.width for block in images for row in block for im in row)
    cell_h = max(im.height for block in images for row in block for im in row)
    scale = min(1.0, 384 / max(cell_w, cell_h))  # keep the grid a sensible size
    cw, ch = max(1, int(cell_w * scale)), max(1, int(cell_h * scale))
    left, top, title = 110, 24, 22
    width = left + cw * len(weights)
    height = sum(title + top + ch * len(block) for block in images)
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    y = 0
    for prompt, block in zip(prompts, images):
        draw.text((4, y + 4), prompt[:120], fill="black")
        y += title
        for c, w in enumerate(weights):
            draw.text((left + c * cw + 4, y + 4), f"weight {w:g}", fill="black")
        y += top
        for label, row in zip(row_labels, block):
            draw.text((4, y + ch // 2 - 6), label, fill="black")
            for c, im in enumerate(row):
                grid.paste(im.convert("RGB").resize((cw, ch)), (left + c * cw, y))
            y += ch
    return grid
