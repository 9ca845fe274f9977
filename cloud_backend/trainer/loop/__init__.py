"""Stage 5, the loop: the Trainer (train) and what it drives each step or epoch: noise and loss weights (noise),
optimizer and schedule (optim), prior-preservation class images (prior), validation, sample images (sampling),
checkpoints, the saved LoRA and sidecar (outputs), TensorBoard (tb), progress lines and phase timings; after a
job, the standalone app's epoch comparison (epoch_grid: epoch files x LoRA weights with the sampling pipeline).

May import every stage below it: config/, data/, model/, network/.
"""
