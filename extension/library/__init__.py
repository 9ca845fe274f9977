"""The user's LoRA library: pulling finished LoRAs into the WebUI's Lora folder with sidecar and preview."""
