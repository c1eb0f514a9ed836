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
"""STIC's image corruptions (`stic/generate_pref.py` `load_image`, L48-53), without torchvision.

With probability 1/2 the image is shrunk so its shorter side is 20 px (`T.Resize(size=20)`: the processor later
scales it back up, so the model sees a blurred image), otherwise its colours are jittered
(`T.ColorJitter(brightness=.5, hue=.3)`: brightness times a factor drawn from [0.5, 1.5], hue shifted by a fraction
of the colour circle drawn from [-0.3, 0.3]). Both are re-implemented on PIL and NumPy, so the package does not pull
torchvision (and with it a CUDA torch) in; the draws come from a `random.Random` the caller seeds.

STIC's released script never applies them: its corrupted branch sets `image_corruption = True` and then calls
`eval_model(args)` without passing it (L220-222), so the "corrupted" answers are answers to the clean image. Here
the corruption is applied, on purpose (docs/self_training.md#what-differs-from-stic).
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageEnhance

RESIZE_SHORTER_SIDE = 20  # T.Resize(size=20)
BRIGHTNESS = 0.5  # T.ColorJitter(brightness=.5): factor in [1 - 0.5, 1 + 0.5]
HUE = 0.3  # T.ColorJitter(hue=.3): shift in [-0.3, 0.3] of the hue circle
CORRUPTIONS = ("resize", "color_jitter")


def shrink(image: Image.Image, shorter_side: int = RESIZE_SHORTER_SIDE) -> Image.Image:
    """Resize so the shorter side is `shorter_side`, keeping the aspect ratio (bilinear, as torchvision's default)."""
    width, height = image.size
    scale = shorter_side / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, resample=Image.Resampling.BILINEAR)


def jitter_colours(image: Image.Image, brightness_factor: float, hue_shift: float) -> Image.Image:
    """Brightness times `brightness_factor`, then the hue rotated by `hue_shift` (a fraction of the circle)."""
    image = ImageEnhance.Brightness(image.convert("RGB")).enhance(brightness_factor)
    hsv = np.array(image.convert("HSV"), dtype=np.int16)
    hsv[..., 0] = (hsv[..., 0] + round(hue_shift * 255)) % 256
    return Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB")


def corrupt_image(image: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """One of STIC's corruptions, drawn from `rng` as STIC draws it; returns the image and the corruption's name."""
    image = image.convert("RGB")
    if rng.random() > 0.5:
        return shrink(image), "resize"
    factor = rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS)
    return jitter_colours(image, factor, rng.uniform(-HUE, HUE)), "color_jitter"


__all__ = ["CORRUPTIONS", "corrupt_image", "jitter_colours", "shrink"]
