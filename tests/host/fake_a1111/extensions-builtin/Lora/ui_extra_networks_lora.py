"""The Lora page of the extra networks (cards): items from networks.available_networks, the sidecar's text."""
import json
import os

import networks
from modules import ui_extra_networks


class ExtraNetworksPageLora(ui_extra_networks.ExtraNetworksPage):
    def __init__(self):
        super().__init__("Lora")

    def refresh(self):
        networks.list_available_networks()

    def list_items(self):
        for name, entry in list(networks.available_networks.items()):
            path = os.path.splitext(entry.filename)[0]
            user_metadata = {}
            if os.path.isfile(path + ".json"):
                with open(path + ".json", encoding="utf8") as f:
                    user_metadata = json.load(f)
            preview = next((path + ext for ext in (".preview.png", ".png", ".jpg", ".webp")
                            if os.path.isfile(path + ext)), None)
            yield {"name": name, "filename": entry.filename, "preview": preview,
                   "description": user_metadata.get("description", ""),
                   "activation_text": user_metadata.get("activation text", ""),
                   "sd_version": user_metadata.get("sd version") or entry.sd_version,
                   "prompt": f"<lora:{entry.alias}:1>"}
