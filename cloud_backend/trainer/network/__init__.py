"""Stage 4, the network trained on the base model: the LoRA layers (lora, dora, fused_lora, norms, fast_path),
setting them up from the config and an earlier file (network_setup), and the Kohya file's metadata (kohya_metadata).

May import config/, data/ and model/.
"""
