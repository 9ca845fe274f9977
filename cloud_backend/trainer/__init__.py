"""The LoRA trainer. `python -m cloudlora_backend.trainer` implements the SageMaker container contract.

The stages, in the order a run uses them; each imports only the stages above it in this list:
  config/   the Kohya TOML: its option table, checks and values; sample-prompt lines; network_args
  data/     the dataset: folder layout, captions, buckets, masks, tokenizers, latent and text encoding
  captions/ auto-captioning before training: WD14 tags or Florence-2 sentences, written beside each image
  model/    the base model: family detection, single-file and diffusers loading, placement, precision
  network/  the LoRA on it: layers (LoRA, DoRA, fused), setup from the config, the Kohya file and its metadata
  loop/     the training loop and what it drives: noise, optimizer, validation, samples, checkpoints, outputs
  flux/     FLUX.1, a family that plugs its loader, loss and writer into loop/ (it may import every stage)
At the top: __main__ (the entrypoint), selftest (the doctor's proof run) and tiny (tiny test checkpoints).

Importing this package must not import torch: the WebUI side uses its pure-Python modules (config, data.layout).
"""
