"""FLUX.1 LoRA training: the BFL-layout transformer, its loaders, the flow-matching trainer and the Kohya writer.

Kept apart from the SD 1.5 / SDXL modules: a family that plugs its loader (load), loss (train.FluxTrainer, a
loop.train.Trainer) and writer (lora) into the same loop, and may import every stage. The stages know FLUX.1 only
as data: its config keys (config/flux_options.py) and its checkpoint keys (model/flux_keys.py, family detection);
the entrypoint picks its trainer. Sources, cited in each module: kohya-ss/sd-scripts (`flux_train_network.py`,
`library/flux_models.py`, `library/flux_utils.py`, `library/flux_train_utils.py`, `networks/lora_flux.py`),
Black Forest Labs' flux reference code (Apache-2.0), and diffusers' FluxTransformer2DModel, which the tests use as
the reference implementation.
"""
