"""Stage 3, the base model: which family a checkpoint is (family, flux_keys), the architectures (archs, arch/),
loading single-file and diffusers checkpoints into components (load, singlefile), device placement and precision.

May import config/ and data/.
"""
