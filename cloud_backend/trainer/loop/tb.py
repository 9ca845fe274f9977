"""TensorBoard events with sd-scripts' tags (loss/current, loss/average, loss/epoch_average, lr/unet,
lr/textencoder, loss/validation/*; see validation.py), written to the job's output/tensorboard (SageMaker syncs it while the job runs)."""
from __future__ import annotations

from pathlib import Path


class Board:
    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter
        folder.mkdir(parents=True, exist_ok=True)
        # Flushed every 10 s: the live loss curve (SageMaker sync, the local job view) reads these files.
        self.writer = SummaryWriter(log_dir=str(folder), flush_secs=10)

    def step(self, step: int, loss: float, average: float, lrs: dict[str, float]) -> None:
        self.writer.add_scalar("loss/current", loss, step)
        self.writer.add_scalar("loss/average", average, step)
        for tag, lr in lrs.items():
            self.writer.add_scalar(f"lr/{tag}", lr, step)

    def epoch(self, epoch: int, average: float) -> None:
        self.writer.add_scalar("loss/epoch_average", average, epoch)

    def validation(self, step: int, epoch: int | None, value: float, train_average: float) -> None:
        """sd-scripts' validation tags (epoch ones at step = epoch, step ones at the global step), plus
        loss/validation/current at the global step of every run: the curve beside the training loss."""
        self.writer.add_scalar("loss/validation/current", value, step)
        if epoch is not None:
            self.writer.add_scalar("loss/validation/epoch_average", value, epoch)
            self.writer.add_scalar("loss/validation/epoch_divergence", value - train_average, epoch)
        else:
            self.writer.add_scalar("loss/validation/step_average", value, step)
            self.writer.add_scalar("loss/validation/step_divergence", value - train_average, step)
        self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
