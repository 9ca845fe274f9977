"""The built-in Lora extension's list of networks (`sys.modules["networks"]` in the WebUI process).

list_available_networks() rescans --lora-dir (.pt, .ckpt, .safetensors, recursively); the name is the file stem,
`ss_output_name` is the alias, and the SD version comes from the metadata as A1111 1.10.1 detects it.
"""
import json
import os
import struct

from modules import shared

available_networks = {}
available_network_aliases = {}


class NetworkOnDisk:
    def __init__(self, name, filename):
        self.name = name
        self.filename = filename
        self.metadata = read_metadata(filename) if filename.endswith(".safetensors") else {}
        self.alias = self.metadata.get("ss_output_name", name)
        self.sd_version = detect_version(self.metadata)


def read_metadata(filename):
    with open(filename, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return header.get("__metadata__") or {}


def detect_version(metadata):
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL"
    if str(metadata.get("ss_v2", "")) == "True":
        return "SD2"
    return "SD1" if metadata else "Unknown"


def list_available_networks():
    available_networks.clear()
    available_network_aliases.clear()
    os.makedirs(shared.cmd_opts.lora_dir, exist_ok=True)
    for root, _dirs, files in os.walk(shared.cmd_opts.lora_dir, followlinks=True):
        for file in sorted(files):
            if os.path.splitext(file)[1].lower() not in (".pt", ".ckpt", ".safetensors"):
                continue
            entry = NetworkOnDisk(os.path.splitext(file)[0], os.path.join(root, file))
            available_networks[entry.name] = entry
            available_network_aliases[entry.name] = entry
            available_network_aliases[entry.alias] = entry


list_available_networks()
