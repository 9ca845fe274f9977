"""FLUX.1 LoRA training: the BFL-layout transformer, its loaders, the flow-matching trainer and the Kohya writer.

Kept apart from the SD 1.5 / SDXL modules and wired in with a few lines (config options, family detection, the
entrypoint's trainer choice). Sources, cited in each module: kohya-ss/sd-scripts (`flux_train_network.py`,
`library/flux_models.py`, `library/flux_utils.py`, `library/flux_train_utils.py`, `networks/lora_flux.py`),
Black Forest Labs' flux reference code (Apache-2.0), and diffusers' FluxTransformer2DModel, which the tests use as
the reference implementation.
"""
