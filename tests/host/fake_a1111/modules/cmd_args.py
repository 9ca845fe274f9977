"""The WebUI's command-line flags that matter to an extension (A1111 1.10.1 names and defaults)."""
import argparse
import os

from modules.paths_internal import data_path, normalized_filepath

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", type=normalized_filepath, default=data_path)
parser.add_argument("--models-dir", type=normalized_filepath, default=None)
parser.add_argument("--skip-prepare-environment", action="store_true")
parser.add_argument("--skip-install", action="store_true")
parser.add_argument("--skip-torch-cuda-test", action="store_true")
parser.add_argument("--skip-python-version-check", action="store_true")
parser.add_argument("--use-cpu", nargs="+", default=[])
parser.add_argument("--no-half", action="store_true")
parser.add_argument("--precision", default="autocast")
parser.add_argument("--no-download-sd-model", action="store_true")
parser.add_argument("--port", type=int, default=None)
parser.add_argument("--listen", action="store_true")
parser.add_argument("--api", action="store_true")
parser.add_argument("--api-auth", type=str, default=None)
parser.add_argument("--nowebui", action="store_true")
parser.add_argument("--ckpt-dir", type=normalized_filepath, default=None)
parser.add_argument("--disable-all-extensions", action="store_true")
parser.add_argument("--disable-extra-extensions", action="store_true")
parser.add_argument("--ui-settings-file", type=str, default=os.path.join(data_path, "config.json"))
