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
"""Image processor class for SQ-LLaVA: the reference's pad-to-square, then CLIP preprocessing.

One of the Hub files: it imports only transformers, PIL and numpy, so `save_pretrained` ships it as remote code.
"""

import os

import numpy as np
import PIL.Image
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil


# The reference (docs/original.md#image-preprocessing): `expand2square` fills with tuple(int(m * 255) for m in image_mean).
CLIP_MEAN_COLOUR = (122, 116, 104)


class SQLlavaImageProcessor(LlavaImageProcessorPil):
    r"""
    SQ-LLaVA's image processor (PIL/NumPy backend, no torchvision): the reference's `expand2square`, then CLIP
    preprocessing at 336 px (docs/original.md#image-preprocessing).

    It is LLaVA's PIL image processor, whose `do_pad` pads to a square with `int(255 * image_mean)` (the CLIP mean
    colour (122, 116, 104)) and the image centred at offset `(max - size) // 2`, exactly as `expand2square`, with two
    changes:

    - the defaults are the reference's: 336 px, and `do_pad=True` (stage 2, `image_aspect_ratio="pad"`). Stage-1
      training (and the reference's self-questioning demo) does not pad: pass `do_pad=False`;
    - colour conversion is PIL's `image.convert("RGB")`, as the reference's `Image.open(path).convert("RGB")`: alpha is
      dropped, not composited onto white (transformers' default), so RGBA, grayscale, palette and CMYK images give
      the same pixels as their RGB conversion. File paths are opened with `PIL.Image.open`, without transformers' EXIF
      rotation, for the same reason.

    Args:
        do_pad (`bool`, *optional*, defaults to `True`):
            Pad the image to a square with the CLIP mean colour before resizing (reference `image_aspect_ratio="pad"`).
        size (`dict[str, int]`, *optional*, defaults to `{"shortest_edge": 336}`):
            Resize the shortest edge to this size (bicubic).
        crop_size (`dict[str, int]`, *optional*, defaults to `{"height": 336, "width": 336}`):
            Centre crop to this size.
        **kwargs:
            Every other argument of [`~transformers.LlavaImageProcessorPil`] (`image_mean`, `image_std`, ...).
    """

    size = {"shortest_edge": 336}
    crop_size = {"height": 336, "width": 336}
    do_pad = True

    def fetch_images(self, image_url_or_urls):
        # Reference docs/original.md#image-preprocessing opens files with `Image.open(...)`: no EXIF transpose (transformers' `load_image` does one).
        if isinstance(image_url_or_urls, (str, os.PathLike)) and os.path.isfile(image_url_or_urls):
            image = PIL.Image.open(image_url_or_urls)
            image.load()
            return image
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(entry) for entry in image_url_or_urls]
        return super().fetch_images(image_url_or_urls)

    def convert_to_rgb(self, image, input_data_format=None) -> np.ndarray:
        if isinstance(image, PIL.Image.Image):
            # PIL's conversion, as the reference's `.convert("RGB")`: RGBA and LA drop alpha, P uses its palette,
            # CMYK and L convert with PIL's formulas.
            return np.array(image.convert("RGB"))
        return super().convert_to_rgb(image, input_data_format=input_data_format)


SQLlavaImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = ["CLIP_MEAN_COLOUR", "SQLlavaImageProcessor"]
