"""A stand-in for the trainer entrypoint, for tests of the job machinery (queue, stop, restart, orphan, failure).

Called as `<python> fake_trainer.py -m cloudlora_backend.trainer --root DIR` (through a wrapper script set as
CLOUDLORA_TRAINER_PYTHON). It follows the container contract: prints `step=i/N loss=L lr=R` lines, writes
TensorBoard events, checkpoints on SIGTERM (exit 143) and continues from that checkpoint when run again, writes
output/failure and exits 3 when told to fail, and writes model/<output_name>.safetensors (a one-module Kohya LoRA
of the job's family) and <output_name>-000001 on success. Behaviour from the environment: FAKE_STEPS (default 5),
FAKE_DELAY seconds per step (default 0.2), FAKE_FAIL (a failure text), FAKE_CRASH_ON_STOP (a SIGTERM makes it crash,
exit 4, instead of checkpointing), FAKE_OUTLIVE_RUNNER (it drops the parent-death signal, like a trainer on a system
without one, so it outlives a killed runner), FAKE_VALIDATION ("0.5,0.3,0.4": a validation loss per epoch, logged as the trainer does, with an epoch file for each
epoch but the last), FAKE_IGNORE_STOP (neither the stop file nor SIGTERM gets through, as to a trainer stuck in a
step), FAKE_TAIL (lines printed at the end of a run, e.g. the trainer's closing `phases=` summary, which the real
trainer prints on a stop too), FAKE_FINISH_DELAY (seconds between the last step and the LoRA, as the real trainer's
final samples take). The network channel's file, if any, is named in the log.
"""
import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

from cloudlora.jobs.results.events import encode_scalar_event, frame_record  # the WebUI venv runs this file

root = Path(sys.argv[sys.argv.index("--root") + 1])
hp = json.loads((root / "input/config/hyperparameters.json").read_text())
name = hp["output_name"]
steps = int(os.environ.get("FAKE_STEPS", "5"))
delay = float(os.environ.get("FAKE_DELAY", "0.2"))
fail = os.environ.get("FAKE_FAIL", "")
crash_on_stop = os.environ.get("FAKE_CRASH_ON_STOP", "")
if os.environ.get("FAKE_OUTLIVE_RUNNER"):
    import ctypes

    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0: no signal when the runner dies
checkpoint = root / "checkpoints" / "state.txt"
step = int(checkpoint.read_text()) if checkpoint.exists() else 0
if step:
    print(f"resumed from checkpoint at step {step}", flush=True)


def on_term(*_):
    if crash_on_stop:
        (root / "output").mkdir(exist_ok=True)
        (root / "output" / "failure").write_text(f"The trainer failed unexpectedly: {crash_on_stop}")
        print(f"Traceback: {crash_on_stop}", flush=True)
        os._exit(4)
    (root / "checkpoints").mkdir(exist_ok=True)
    (root / "checkpoints" / "state.txt").write_text(str(step))
    for line in os.environ.get("FAKE_TAIL", "").splitlines():
        print(line, flush=True)
    print(f"stopped at step {step}: checkpoint saved", flush=True)
    sys.exit(143)


signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("FAKE_IGNORE_STOP") else on_term)
assert (root / "input/data/model").iterdir(), "no model channel"
assert (root / "input/data/dataset").exists(), "no dataset channel"
tb = root / "output" / "tensorboard"
tb.mkdir(parents=True, exist_ok=True)
events = open(tb / "events.out.tfevents.1.fake", "ab")
stop_file = root / "runner" / "stop-requested"  # Stop on Windows, where no SIGTERM arrives
for step in range(step + 1, steps + 1):
    time.sleep(delay)
    if stop_file.exists() and not os.environ.get("FAKE_IGNORE_STOP"):
        step -= 1  # this step did not happen
        on_term()
    loss = 1.0 / step
    print(f"step={step}/{steps} loss={loss:.4f} lr=0.0001 it/s=5.0", flush=True)
    events.write(frame_record(encode_scalar_event("loss/current", loss, step, time.time())))
    events.flush()
if fail:
    (root / "output" / "failure").write_text(fail)
    print(f"error: {fail}", flush=True)
    sys.exit(3)
time.sleep(float(os.environ.get("FAKE_FINISH_DELAY", "0")))
model = root / "model"
(model / "samples").mkdir(parents=True, exist_ok=True)
sdxl = hp.get("family") == "sdxl"
module = "lora_unet_input_blocks_4_1_proj_in" if sdxl else "lora_unet_down_blocks_0_attentions_0_proj_in"


def write_lora(path, value):
    header = {"__metadata__": {"ss_output_name": path.stem, "ss_base_model_version": "sdxl_base_v1-0" if sdxl
                               else "sd_v1"},
              f"{module}.alpha": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
              f"{module}.lora_down.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [4, 8]},
              f"{module}.lora_up.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [8, 12]}}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + struct.pack("<3f", 1.0, value, value))


network = root / "input/data/network"
if network.is_dir():
    print(f"continuing from {', '.join(sorted(p.name for p in network.iterdir()))} "
          f"(network_weights={hp.get('network_weights', '')})", flush=True)
validation = [float(v) for v in os.environ.get("FAKE_VALIDATION", "").split(",") if v]
for epoch, value in enumerate(validation, start=1):
    events.write(frame_record(encode_scalar_event("loss/validation/epoch_average", value, epoch, time.time())))
    events.write(frame_record(encode_scalar_event("loss/validation/current", value, epoch * steps, time.time())))
    if epoch < len(validation):
        write_lora(model / f"{name}-{epoch:06d}.safetensors", 0.1 * epoch)
events.flush()
write_lora(model / f"{name}.safetensors", 1.0)
if not validation:
    write_lora(model / f"{name}-000001.safetensors", 0.5)
from PIL import Image  # noqa: E402

Image.new("RGB", (16, 16), (200, 60, 40)).save(model / "samples" / "final_00.png")
for line in os.environ.get("FAKE_TAIL", "").splitlines():
    print(line, flush=True)
print("done", flush=True)
