"""How inference callers (the service, the feature cache) run an encoder on CPU: a serving
choice, not part of the model, so it lives outside `Encoder`."""

import torch

from models.encoders._base import Encoder

# On CPU, a few images per forward pass keep the activations in cache: benchmarks.encoder
# measured 13 img/s in chunks of 1-4 against 9 at batch 16 (EfficientNet-Lite0, 256 px).
CPU_CHUNK = 4


@torch.inference_mode()
def encode_in_chunks(
    encoder: Encoder, images: torch.Tensor, chunk: int = CPU_CHUNK
) -> tuple[torch.Tensor, tuple[int, int]]:
    """`encoder(images)` for inference, in chunks of `chunk` images on CPU and in one pass
    elsewhere; the same grid (B, h*w, D) and (h, w) either way."""
    if images.device.type != "cpu" or len(images) <= chunk:
        return encoder(images)
    outputs = [encoder(part) for part in images.split(chunk)]  # each (<=chunk, L, D), (h, w)
    return torch.cat([grid for grid, _ in outputs]), outputs[0][1]  # (B, L, D), (h, w)
