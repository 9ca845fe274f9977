"""The LoRA trainer. `python -m cloudlora_backend.trainer` implements the SageMaker container contract.

Importing this package must not import torch: the WebUI side uses its pure-Python modules (config, layout).
"""
