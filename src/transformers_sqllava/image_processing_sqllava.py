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

Every input image is first brought to one form, an 8-bit RGB `PIL.Image` (what the reference's
`Image.open(path).convert("RGB")` gives), by [`to_rgb_image`]; only then do padding, resizing and rescaling run. So
the same picture gives the same pixels whatever it arrives as, and a bad input fails here, with its name, rather
than deep inside the resize. The rules are in docs/errors.md#images.
"""

import base64
import binascii
import io
import os
import urllib.request

import numpy as np
import PIL.Image
from transformers.image_utils import ChannelDimension
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

# The reference (docs/original.md#image-preprocessing): `expand2square` fills with
# tuple(int(m * 255) for m in image_mean).
CLIP_MEAN_COLOUR = (122, 116, 104)

# A URL that does not answer within this many seconds fails instead of hanging a training run or a demo.
URL_TIMEOUT_SECONDS = 10.0

ACCEPTED = (
    "a PIL image, a NumPy array or torch tensor ((H, W), (H, W, C) or (C, H, W) with C in 1-4; (N, ...) for a batch), "
    "a local file path, an http(s) URL or a base64 data URI"
)
# PIL modes that `convert("RGB")` maps exactly as the reference does (alpha dropped, palette looked up, CMYK by
# PIL's formula). The 16-bit and float modes are scaled first instead: PIL would clip them to 255 (white).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _is_offline() -> bool:
    # Read at call time (huggingface_hub reads it once, at import): `HF_HUB_OFFLINE=1` set later still applies.
    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any(str(value).upper() in ("1", "ON", "YES", "TRUE") for value in values if value is not None)


def _is_torch_tensor(value) -> bool:
    # Duck-typed, so that this Hub file needs no torch import.
    return type(value).__module__.startswith("torch") and hasattr(value, "detach") and hasattr(value, "numpy")


def open_image_file(path: str | os.PathLike) -> PIL.Image.Image:
    """
    Open and fully read a local image file with `PIL.Image.open`, as the reference does (no EXIF rotation).

    Raises:
        `FileNotFoundError`: no file at `path`.
        `ValueError`: `path` is a folder, an empty file, or not an image PIL can decode (corrupt or truncated).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"Image path {path!r} is a folder, not an image file.")
    if not os.path.isfile(path):
        shown = path if len(path) <= 300 else path[:100] + f"... ({len(path)} characters)"
        raise FileNotFoundError(
            f"Image file {shown!r} not found (working directory {os.getcwd()!r}). Check the path; relative paths of "
            "LLaVA data are relative to `image_folder`."
        )
    if os.path.getsize(path) == 0:
        raise ValueError(f"Image file {path!r} is empty (0 bytes): re-download or re-extract it.")
    try:
        image = PIL.Image.open(path)
        image.load()  # decode now: a truncated file fails here, naming its path, not later in the resize
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
        raise ValueError(
            f"Cannot read image file {path!r}: {type(error).__name__}: {error}. The file is corrupt, truncated or not "
            "an image: re-download or re-extract it."
        ) from error
    return image


def _open_bytes(data: bytes, what: str) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:
        raise ValueError(f"Cannot decode the image of {what}: {type(error).__name__}: {error}.") from error
    return image


def load_image_source(source: str | os.PathLike) -> PIL.Image.Image:
    """
    A local file (see [`open_image_file`]), an `http(s)://` URL (refused when offline, `HF_HUB_OFFLINE=1`; else read
    with a timeout of `URL_TIMEOUT_SECONDS`), or a base64 image (`data:image/...;base64,...` or bare base64).
    """
    source = os.fspath(source)
    if os.path.exists(source):
        return open_image_file(source)
    if source.startswith(("http://", "https://")):
        if _is_offline():
            raise ValueError(
                f"Image URL {source!r} cannot be fetched: offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) is "
                "set. Download the image and pass its local path, or a PIL image from `PIL.Image.open(path)`."
            )
        try:
            with urllib.request.urlopen(source, timeout=URL_TIMEOUT_SECONDS) as response:
                data = response.read()
        except Exception as error:  # URLError, HTTPError, timeouts
            raise ValueError(
                f"Cannot fetch image URL {source!r}: {type(error).__name__}: {error}. Download the image and pass its "
                "local path, or a PIL image from `PIL.Image.open(path)`."
            ) from error
        return _open_bytes(data, f"URL {source!r}")
    encoded = source.split(",", 1)[1] if source.startswith("data:image/") else source
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        data = None
    if source.startswith("data:image/"):
        if data is None:
            raise ValueError(f"The data URI {source[:40]!r}... is not valid base64.")
        return _open_bytes(data, "the data URI")
    if data:
        try:
            return _open_bytes(data, "a base64 string")
        except ValueError:
            pass  # valid base64 by accident (e.g. "cat"): treat it as the path it more likely is
    return open_image_file(source)  # raises FileNotFoundError naming the path


def _to_uint8(pixels: np.ndarray, what: str) -> np.ndarray:
    """8-bit values of `pixels` by the documented rules (docs/errors.md#images)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        raise TypeError(
            f"{what} of shape {pixels.shape} is boolean: pass 8-bit pixels (e.g. `mask.astype(np.uint8) * 255`)."
        )
    if pixels.dtype == np.uint16:  # 16 bits per channel: scale the full range, as 65535 -> 255
        return np.round(pixels / 257.0).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.integer):
        low, high = int(pixels.min()), int(pixels.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{what} of shape {pixels.shape} has integer values in [{low}, {high}], outside 0-255. Pass 8-bit "
                "pixels; for 16-bit ones use dtype uint16 (scaled by 1/257)."
            )
        return pixels.astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        pixels = pixels.astype(np.float64)
        if not np.isfinite(pixels).all():
            raise ValueError(f"{what} of shape {pixels.shape} has NaN or infinite values.")
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{what} of shape {pixels.shape} has float values in [{low:.3g}, {high:.3g}]. Pass raw pixels in "
                "[0, 1] or [0, 255]: this processor rescales and normalises itself (were they normalised already?)."
            )
        # Floats in [0, 1] are already rescaled: bring them to 0-255 so that `rescale_factor` applies once.
        return np.round(pixels * 255.0 if high <= 1.0 else pixels).astype(np.uint8)
    raise TypeError(f"{what} has dtype {pixels.dtype}: pass uint8, uint16, integer or float pixels.")


def _channels_last(pixels: np.ndarray, input_data_format, what: str) -> np.ndarray:
    """`pixels` as (H, W, C), C in 1-4; `input_data_format` settles an ambiguous layout."""
    if pixels.ndim == 2:
        return pixels[:, :, None]
    if pixels.ndim != 3:
        raise ValueError(
            f"{what} has shape {pixels.shape}: an image is (H, W), (H, W, C) or (C, H, W), a batch (N, ...)."
        )
    channels = (1, 2, 3, 4)
    if input_data_format is not None:
        first = ChannelDimension(input_data_format) == ChannelDimension.FIRST
    elif pixels.shape[0] in channels:  # transformers' rule: channels first when both ends could be channels
        first = True
    elif pixels.shape[-1] in channels:
        first = False
    else:
        raise ValueError(
            f"{what} has shape {pixels.shape}: no axis of 1-4 channels at either end. Pass (H, W, C) or (C, H, W) "
            "with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)."
        )
    pixels = np.moveaxis(pixels, 0, -1) if first else pixels
    if pixels.shape[-1] not in channels:
        raise ValueError(f"{what} has {pixels.shape[-1]} channels (shape {pixels.shape}); 1 to 4 are supported.")
    return pixels


def _array_to_rgb(pixels: np.ndarray, input_data_format, what: str) -> PIL.Image.Image:
    pixels = _channels_last(pixels, input_data_format, what)
    if pixels.size == 0:
        raise ValueError(f"{what} has no pixels (shape {pixels.shape}).")
    pixels = _to_uint8(pixels, what)
    # As PIL's `convert("RGB")`: grey is repeated, alpha dropped (never composited), so an (H, W, 4) array and the
    # same picture as an RGBA PIL image give the same pixels. Four channels are RGBA, never CMYK.
    if pixels.shape[-1] in (1, 2):
        pixels = np.repeat(pixels[:, :, :1], 3, axis=-1)
    return PIL.Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]))


def to_rgb_image(image, input_data_format: str | ChannelDimension | None = None) -> PIL.Image.Image:
    r"""
    One image as an 8-bit RGB `PIL.Image`, as the reference's `Image.open(path).convert("RGB")` gives it.

    - PIL modes: `RGB` as is; `RGBA`, `LA`, `P`, `PA`, `L`, `1`, `CMYK`, `YCbCr` by PIL's `convert("RGB")` (alpha
      dropped, not composited); the 16-bit modes (`I;16`...) scaled by 1/257; `I` must hold 0-255; `F` follows the
      float rule.
    - Arrays and tensors: (H, W), (H, W, C) or (C, H, W), C = 1, 2 (grey + alpha), 3 or 4 (RGBA; alpha dropped).
      `uint8` as is; `uint16` scaled by 1/257; other integers must lie in 0-255; floats in [0, 1] are taken as
      already rescaled and multiplied by 255 (so `rescale_factor` applies once), floats in (1, 255] as 0-255,
      rounded; anything else (negative, NaN, > 255) raises.
    - Strings and paths: see [`load_image_source`].

    Raises:
        `TypeError`: an unsupported kind of input; `FileNotFoundError`: a missing file; `ValueError`: anything that is
        not a readable image, with what is wrong and the fix.
    """
    if isinstance(image, (str, os.PathLike)):
        image = load_image_source(image)
    if isinstance(image, PIL.Image.Image):
        filename = getattr(image, "filename", "")  # set by `PIL.Image.open`
        what = f"PIL image{f' {filename!r}' if filename else ''} (mode {image.mode!r}, size {image.size})"
        if 0 in image.size:
            raise ValueError(f"{what} has no pixels.")
        try:
            image.load()  # a lazily opened, truncated file fails here
            pixels = np.array(image) if image.mode in _SIXTEEN_BIT_MODES + ("I", "F") else None
            converted = image if image.mode == "RGB" or pixels is not None else image.convert("RGB")
        except Exception as error:  # OSError for truncated data, ValueError for unsupported modes
            raise ValueError(f"Cannot read {what}: {type(error).__name__}: {error}.") from error
        if pixels is None:
            return converted
        # PIL's `convert("RGB")` would clip these modes at 255 (a 16-bit photo turns white): scale them instead.
        return _array_to_rgb(pixels.astype(np.uint16) if image.mode in _SIXTEEN_BIT_MODES else pixels, None, what)
    if _is_torch_tensor(image):
        image = image.detach().cpu()
        image = image.float() if str(image.dtype) in ("torch.bfloat16", "torch.float16") else image
        return _array_to_rgb(image.numpy(), input_data_format, f"Tensor ({image.dtype})")
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, input_data_format, f"Array ({image.dtype})")
    raise TypeError(f"Unsupported image type {type(image).__name__}: pass {ACCEPTED}.")


def to_rgb_images(images, input_data_format: str | ChannelDimension | None = None):
    """[`to_rgb_image`] over a structure of images (lists nest; a 4-D array or tensor is a batch), kept as it is."""
    if images is None:
        raise TypeError(f"No image given (`None`): pass {ACCEPTED}.")
    if isinstance(images, (list, tuple)):
        return [to_rgb_images(image, input_data_format) for image in images]
    ndim = getattr(images, "ndim", None)
    if ndim == 4 and (isinstance(images, np.ndarray) or _is_torch_tensor(images)):
        return [to_rgb_image(image, input_data_format) for image in images]
    return to_rgb_image(images, input_data_format)


class SQLlavaImageProcessor(LlavaImageProcessorPil):
    r"""
    SQ-LLaVA's image processor (PIL/NumPy backend, no torchvision): the reference's `expand2square`, then CLIP
    preprocessing at 336 px (docs/original.md#image-preprocessing).

    It is LLaVA's PIL image processor, whose `do_pad` pads to a square with `int(255 * image_mean)` (the CLIP mean
    colour (122, 116, 104)) and the image centred at offset `(max - size) // 2`, exactly as `expand2square`, with
    these changes:

    - the defaults are the reference's: 336 px, and `do_pad=True` (stage 2, `image_aspect_ratio="pad"`). Stage-1
      training (and the reference's self-questioning demo) does not pad: pass `do_pad=False`;
    - every input is first made an 8-bit RGB image by [`to_rgb_image`]: PIL's `image.convert("RGB")`, as the
      reference's `Image.open(path).convert("RGB")`, so alpha is dropped, not composited onto white (transformers'
      default), and an RGBA array gives the pixels of the same RGBA PIL image. Floats in [0, 1] count as already
      rescaled and are not rescaled twice; 16-bit images are scaled to 8 bits instead of clipped. File paths are
      opened with `PIL.Image.open`, without transformers' EXIF rotation, as the reference does;
    - bad inputs raise with the input named: a missing file `FileNotFoundError`, a corrupt or empty file, a URL while
      offline, an unreadable array `ValueError`, an unsupported type `TypeError` (docs/errors.md#images).

    `do_rescale=False` keeps the 0-255 values of that RGB image (whatever the input's own range).

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

    def fetch_images(self, image_url_or_urls, input_data_format: str | ChannelDimension | None = None):
        """Every image of `image_url_or_urls` (any structure, see [`to_rgb_images`]) as an 8-bit RGB `PIL.Image`."""
        return to_rgb_images(image_url_or_urls, input_data_format)

    def _prepare_image_like_inputs(self, images, *args, expected_ndims: int = 3, **kwargs):
        # Before transformers flattens the structure, which rejects (H, W) arrays, and before any resize, so that
        # `input_data_format` settles an ambiguous array layout here and nowhere else.
        images = self.fetch_images(images, input_data_format=kwargs.pop("input_data_format", None))
        return super()._prepare_image_like_inputs(images, *args, expected_ndims=expected_ndims, **kwargs)

    def convert_to_rgb(self, image, input_data_format=None) -> np.ndarray:
        if isinstance(image, PIL.Image.Image):
            return np.array(to_rgb_image(image))
        return super().convert_to_rgb(image, input_data_format=input_data_format)


SQLlavaImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = ["CLIP_MEAN_COLOUR", "SQLlavaImageProcessor", "to_rgb_image", "to_rgb_images"]
