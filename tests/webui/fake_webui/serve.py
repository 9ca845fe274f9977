"""`cloudlora ui` as if inside A1111: the fake `modules` package is the host (webui.setup() installs it: Lora folder,
txt2img, loaded model), then the standalone app serves the tabs. For browser tests of WebUI-only controls.

Usage: python serve.py --port P [--api-auth U:P]. FAKE_WEBUI_MODELS is models_path (default: a temp folder);
CLOUDLORA_LORA_DIR, when set, is passed as --lora-dir.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fake `modules`

import modules.paths  # noqa: E402
import modules.shared  # noqa: E402

modules.paths.models_path = os.environ.get("FAKE_WEBUI_MODELS") or tempfile.mkdtemp(prefix="fake-webui-models-")
modules.shared.cmd_opts.lora_dir = os.environ.get("CLOUDLORA_LORA_DIR") or None

from cloudlora import webui  # noqa: E402
from cloudlora.ui import app  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--api-auth", default=None)
args = parser.parse_args()
webui.setup()
app.serve(port=args.port, api_auth=args.api_auth)
