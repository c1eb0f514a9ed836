# Copyright 2026 The transformers-sqllava authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Stage 0 of the demo's training: pretrain the tiny vision side, the stand-in for CLIP's own pretraining.

The real SQ-LLaVA starts from OpenAI's CLIP ViT-L/336, pretrained on 400M image-text pairs, and its language model
learns to *read* those features. The demo downloads nothing, so its vision tower starts from random weights, and a
language model cannot learn to look things up in features that are still being invented: trained end to end, the
tiny model stayed at chance on "what colour is the circle?" for thousands of steps (see `benchmarks/README.md`,
"demo_learnability").

So stage 0 teaches the vision tower, the prototype extractor and the projector (the whole image path, what LLaVA
calls `get_image_features`) to write into each image token a fixed embedding of what its grid cell holds: the sum of
a random vector for its colour, one for its shape, one for its size (or "empty" for each) and one for the cell
itself, like a text embedding of the cell's description. With 24 px patches on 72 px scenes each image token is
exactly one cell. The codes are random and fixed (seeded), wide (the language model's width) and large (unit variance
per dimension), so the attributes sit in nearly orthogonal directions: the language model then learns the look-up
as fast as if it were handed the scene's symbols (measured in `benchmarks/demo_learnability.py`). After stage 0 the
image path is frozen, as LLaVA freezes CLIP.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from .scenes import CELLS, COLOURS, SHAPES, SIZES, Scene, generate_scene

# Seeds of the stage-0 scenes: far from the training (0, 1, ...) and held-out (1_000_000, ...) seeds. Stage 0 sees
# only images, no text, so drawing its own scenes leaks nothing about the held-out questions.
VISION_PRETRAINING_SEED_START = 5_000_000


def cell_contents(scene: Scene) -> torch.Tensor:
    """`(9, 4)` long tensor, one row per grid cell in reading order: colour, shape, size and cell index.

    An empty cell has the extra index `len(COLOURS)`, `len(SHAPES)`, `len(SIZES)` ("nothing") for its attributes.
    """
    by_cell = {obj.cell: obj for obj in scene.objects}
    rows = []
    for index, cell in enumerate(CELLS):
        obj = by_cell.get(cell)
        if obj is None:
            rows.append([len(COLOURS), len(SHAPES), len(SIZES), index])
        else:
            rows.append([list(COLOURS).index(obj.colour), SHAPES.index(obj.shape), list(SIZES).index(obj.size), index])
    return torch.tensor(rows)


class CellCodebook(nn.Module):
    """Fixed random codes for the cell contents: `code(cell) = colour + shape + size + position` vectors.

    Buffers, not parameters: the targets never move. Seeded, so the same `width` and `seed` give the same codes.
    """

    def __init__(self, width: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        sizes = {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1, "size": len(SIZES) + 1, "cell": len(CELLS)}
        for name, rows in sizes.items():
            self.register_buffer(name, torch.randn(rows, width, generator=generator), persistent=False)

    def forward(self, contents: torch.Tensor) -> torch.Tensor:
        """`(..., 4)` cell contents -> `(..., width)` codes."""
        tables = (self.colour, self.shape, self.size, self.cell)
        return sum(table[contents[..., slot]] for slot, table in enumerate(tables))

    def decode(self, features: torch.Tensor, contents: torch.Tensor) -> torch.Tensor:
        """For each slot, whether the nearest code of that slot (the other slots' true codes removed) is the true one.

        Returns a `(4,)` float tensor: the share of cells decoded right for colour, shape, size and cell.
        """
        tables = (self.colour, self.shape, self.size, self.cell)
        shares = []
        for slot, table in enumerate(tables):
            rest = sum(other[contents[..., index]] for index, other in enumerate(tables) if index != slot)
            distances = torch.cdist((features - rest).flatten(0, -2), table)
            shares.append((distances.argmin(-1) == contents[..., slot].flatten()).float().mean())
        return torch.stack(shares)


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The language model's image tokens for a batch of images: `(batch, image tokens, text width)`."""
    outputs = model.model.get_image_features(pixel_values=pixel_values, return_dict=True)
    features = outputs.pooler_output
    return torch.stack(list(features)) if isinstance(features, (list, tuple)) else features


def pretrain_vision(
    model,
    processor,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    log_every: int = 100,
) -> dict[str, float]:
    """Train `model`'s image path (vision tower, prototype extractor, projector) to write each cell's code.

    Mean squared error to [`CellCodebook`] codes, AdamW with a cosine schedule, on scenes of seeds
    `VISION_PRETRAINING_SEED_START + ...` rendered at the processor's size. Leaves the language model untouched.

    Returns:
        `dict`: the final `loss` and, on 256 fresh scenes, the share of cells whose `colour`, `shape`, `size` and
        `cell` decode right from the features (all 1.0 when stage 0 worked).
    """
    if processor.image_seq_length != len(CELLS):
        raise ValueError(
            f"Vision pretraining writes one code per grid cell, so it needs {len(CELLS)} image tokens (patch size = "
            f"image size / 3), got image_seq_length={processor.image_seq_length}."
        )
    from tqdm.auto import tqdm

    image_size = processor.image_processor.crop_size["height"]
    codebook = CellCodebook(model.config.text_config.hidden_size, seed=seed)
    parameters = [
        *model.model.vision_tower.parameters(),
        *model.model.multi_modal_projector.parameters(),
    ]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))

    def batch(start: int, count: int):
        scenes = [generate_scene(start + index, image_size=image_size) for index in range(count)]
        pixels = processor.image_processor([scene.render() for scene in scenes], return_tensors="pt").pixel_values
        return pixels, torch.stack([cell_contents(scene) for scene in scenes])

    model.train()
    loss = torch.tensor(float("nan"))
    started = time.perf_counter()
    progress = tqdm(range(steps), desc="stage 0: vision pretraining", unit="step")
    for step in progress:
        pixels, contents = batch(VISION_PRETRAINING_SEED_START + step * batch_size, batch_size)
        loss = (image_features(model, pixels) - codebook(contents)).pow(2).mean()
        loss.backward()
        optimizer.step(), schedule.step(), optimizer.zero_grad()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            progress.set_postfix(loss=f"{loss.item():.4f}")
    with torch.no_grad():
        model.eval()
        pixels, contents = batch(VISION_PRETRAINING_SEED_START - 256, 256)  # not among the steps' scenes
        shares = codebook.decode(image_features(model, pixels), contents)
        model.train()
    return {
        "loss": round(loss.item(), 5),
        "seconds": round(time.perf_counter() - started, 1),
        **{name: round(share.item(), 4) for name, share in zip(("colour", "shape", "size", "cell"), shares)},
    }


def freeze_image_path(model) -> None:
    """Freeze the vision tower, prototype extractor and projector (stages 1 and 2 then train the language model)."""
    model.model.vision_tower.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(False)


__all__ = ["CellCodebook", "cell_contents", "freeze_image_path", "image_features", "pretrain_vision"]
