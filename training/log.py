"""What a run shows while it trains: TensorBoard scalars and validation pictures."""

from pathlib import Path

import numpy as np
from PIL import Image


class TrainingLog:
    """TensorBoard scalars of the main process (`tensorboard --logdir RUN/tb`)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when logging

            self.writer = SummaryWriter(str(out_dir / "tb"))

    def step(self, step: int, loss: float, lr: float) -> None:
        if self.writer:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def epoch(
        self, step: int, metrics: dict[str, float], pictures: list[tuple[str, Image.Image]]
    ) -> None:
        if self.writer:
            for name, value in metrics.items():
                self.writer.add_scalar(f"val/{name}", value, step)
            for i, (text, picture) in enumerate(pictures):
                tag = f"val/picture_{i}"
                self.writer.add_image(tag, np.asarray(picture), step, dataformats="HWC")
                self.writer.add_text(tag, text, step)
            self.writer.flush()
