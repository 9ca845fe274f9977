"""Cloud LoRA Trainer, the WebUI side: assets, store, jobs, library and CLI. Imports without a WebUI."""

__version__ = "0.1.0"
