"""`SQLlavaImageProcessor` with every kind of image transformers' processors accept, and with bad ones.

The same picture gives the same pixels whatever it arrives as (PIL in any mode, NumPy or torch, HWC or CHW, uint8,
uint16 or float, a file, a base64 string); a bad input raises `TypeError`, `FileNotFoundError` or `ValueError` naming
it. Rules: docs/errors.md#images.
"""

import base64
import io

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_processor

from transformers_sqllava import SQLlavaImageProcessor
from transformers_sqllava import image_processing_sqllava as image_module


@pytest.fixture(scope="module")
def image_processor():
    return SQLlavaImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})


def pixels_of(image_processor, image, **kwargs) -> torch.Tensor:
    return image_processor(image, return_tensors="pt", **kwargs)["pixel_values"]


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # not square: pad-to-square runs
ALPHA = RNG.integers(0, 256, (12, 20, 1), dtype=np.uint8)
GREY = RGB[:, :, 0]


@pytest.fixture(scope="module")
def reference(image_processor):
    return pixels_of(image_processor, PIL.Image.fromarray(RGB))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: RGB, id="numpy-hwc-uint8"),
        pytest.param(lambda: np.ascontiguousarray(RGB.transpose(2, 0, 1)), id="numpy-chw-uint8"),
        pytest.param(lambda: RGB.astype(np.float32) / 255, id="numpy-float-0-1"),  # not rescaled twice
        pytest.param(lambda: RGB.astype(np.float64), id="numpy-float-0-255"),
        pytest.param(lambda: RGB.astype(np.int64), id="numpy-int64"),
        pytest.param(lambda: RGB.astype(np.uint16) * 257, id="numpy-uint16"),
        pytest.param(lambda: torch.from_numpy(RGB.transpose(2, 0, 1).copy()), id="torch-chw-uint8"),
        pytest.param(lambda: torch.from_numpy(RGB.copy()), id="torch-hwc-uint8"),
        pytest.param(lambda: torch.from_numpy(RGB.transpose(2, 0, 1).copy()).float() / 255, id="torch-float-0-1"),
        pytest.param(lambda: (torch.from_numpy(RGB.copy()).float() / 255).requires_grad_(), id="torch-requires-grad"),
        pytest.param(lambda: PIL.Image.fromarray(np.concatenate([RGB, ALPHA], -1)), id="pil-rgba"),
        pytest.param(lambda: np.concatenate([RGB, ALPHA], -1), id="numpy-rgba"),  # alpha dropped, as PIL does
        pytest.param(lambda: torch.from_numpy(np.concatenate([RGB, ALPHA], -1)).permute(2, 0, 1), id="torch-rgba-chw"),
        pytest.param(lambda: PIL.Image.fromarray(RGB).convert("CMYK").convert("RGB"), id="pil-cmyk-round-trip"),
    ],
)
def test_the_same_picture_gives_the_same_pixels(image_processor, reference, make):
    torch.testing.assert_close(pixels_of(image_processor, make()), reference, rtol=0, atol=0)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: GREY, id="numpy-2d"),
        pytest.param(lambda: GREY[:, :, None], id="numpy-hw1"),
        pytest.param(lambda: GREY[None], id="numpy-1hw"),
        pytest.param(lambda: np.stack([GREY, ALPHA[:, :, 0]], -1), id="numpy-grey-alpha"),
        pytest.param(lambda: PIL.Image.fromarray(np.stack([GREY, ALPHA[:, :, 0]], -1), "LA"), id="pil-LA"),
        pytest.param(lambda: PIL.Image.fromarray(GREY.astype(np.uint16) * 257), id="pil-I;16"),  # scaled, not clipped
        pytest.param(lambda: PIL.Image.fromarray(GREY.astype(np.float32) / 255), id="pil-F-0-1"),
        pytest.param(lambda: PIL.Image.fromarray(GREY.astype(np.int32)), id="pil-I"),
        pytest.param(lambda: torch.from_numpy(GREY.copy()), id="torch-2d"),
    ],
)
def test_grey_inputs_equal_the_L_image(image_processor, make):
    expected = pixels_of(image_processor, PIL.Image.fromarray(GREY, "L"))
    torch.testing.assert_close(pixels_of(image_processor, make()), expected, rtol=0, atol=0)


def test_sixteen_bit_pil_is_scaled_not_clipped_to_white(image_processor):
    assert PIL.Image.fromarray(GREY.astype(np.uint16) * 257).mode == "I;16"
    white = pixels_of(image_processor, PIL.Image.new("L", (20, 12), 255))
    assert not torch.equal(pixels_of(image_processor, PIL.Image.fromarray(GREY.astype(np.uint16) * 257)), white)


@pytest.mark.parametrize("mode", ["P", "CMYK", "1", "L", "YCbCr"])
def test_pil_modes_convert_as_pil_does(image_processor, mode):
    image = PIL.Image.fromarray(RGB).convert(mode)
    expected = pixels_of(image_processor, image.convert("RGB"))
    torch.testing.assert_close(pixels_of(image_processor, image), expected, rtol=0, atol=0)


def test_pil_palette_with_transparency_uses_its_palette(image_processor):
    image = PIL.Image.fromarray(RGB).convert("P")
    image.info["transparency"] = 0
    torch.testing.assert_close(
        pixels_of(image_processor, image), pixels_of(image_processor, image.convert("RGB")), rtol=0, atol=0
    )


def test_a_batch_array_and_a_nested_list_are_images_in_order(image_processor, reference):
    batch = np.stack([RGB, 255 - RGB])
    out = pixels_of(image_processor, batch)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out[:1], reference, rtol=0, atol=0)
    nested = pixels_of(image_processor, [[PIL.Image.fromarray(RGB)], [255 - RGB]])
    torch.testing.assert_close(nested, out, rtol=0, atol=0)


def test_input_data_format_settles_an_ambiguous_layout(image_processor):
    # (3, 4, 3): channels first by transformers' rule; `input_data_format` says otherwise.
    image = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    first = pixels_of(image_processor, image)
    last = pixels_of(image_processor, image, input_data_format="channels_last")
    torch.testing.assert_close(last, pixels_of(image_processor, PIL.Image.fromarray(image)), rtol=0, atol=0)
    assert not torch.equal(first, last)


def test_files_and_base64_give_the_pixels_of_the_pil_image(image_processor, reference, tmp_path):
    path = tmp_path / "picture.png"
    PIL.Image.fromarray(RGB).save(path)
    for source in (str(path), path):
        torch.testing.assert_close(pixels_of(image_processor, source), reference, rtol=0, atol=0)
    encoded = base64.b64encode(path.read_bytes()).decode()
    for source in (encoded, "data:image/png;base64," + encoded):
        torch.testing.assert_close(pixels_of(image_processor, source), reference, rtol=0, atol=0)


def test_a_lazily_opened_pil_file_is_read(image_processor, reference, tmp_path):
    path = tmp_path / "picture.png"
    PIL.Image.fromarray(RGB).save(path)
    with PIL.Image.open(path) as image:
        torch.testing.assert_close(pixels_of(image_processor, image), reference, rtol=0, atol=0)


def test_the_processor_takes_the_same_kinds(reference):
    processor = tiny_processor()
    for image in (RGB, GREY, RGB.astype(np.float32) / 255):
        inputs = processor(text="<image>\nWhat is it?", images=image, return_tensors="pt")
        assert inputs["pixel_values"].shape == (1, 3, 16, 16)
    inputs = processor(text="<image>\nWhat is it?", images=RGB.astype(np.float32) / 255, return_tensors="pt")
    torch.testing.assert_close(inputs["pixel_values"], reference, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------------------------


def test_missing_file_raises_file_not_found_naming_it(image_processor, tmp_path):
    missing = tmp_path / "nowhere" / "cat.jpg"
    with pytest.raises(FileNotFoundError, match=r"Image file .*nowhere/cat\.jpg.* not found"):
        pixels_of(image_processor, str(missing))
    with pytest.raises(FileNotFoundError, match=r"cat\.jpg"):
        pixels_of(image_processor, [PIL.Image.fromarray(RGB), missing])


def test_empty_corrupt_and_truncated_files_raise_value_error_naming_them(image_processor, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"this is not a png")
    buffer = io.BytesIO()
    PIL.Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"empty\.png.*empty \(0 bytes\)"):
        pixels_of(image_processor, str(tmp_path / "empty.png"))
    with pytest.raises(ValueError, match=r"Cannot read image file .*corrupt\.png.*corrupt, truncated or not an image"):
        pixels_of(image_processor, str(tmp_path / "corrupt.png"))
    with pytest.raises(ValueError, match=r"truncated\.jpg"):
        pixels_of(image_processor, str(tmp_path / "truncated.jpg"))
    with pytest.raises(ValueError, match="is a folder"):
        pixels_of(image_processor, str(tmp_path))


def test_a_truncated_file_opened_lazily_raises_value_error(image_processor, tmp_path):
    buffer = io.BytesIO()
    PIL.Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    image = PIL.Image.open(tmp_path / "truncated.jpg")  # opening reads only the header
    with pytest.raises(ValueError, match=r"Cannot read PIL image .*truncated\.jpg"):
        pixels_of(image_processor, image)


def test_urls_are_refused_offline_without_a_network_attempt(image_processor, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a network request was made")

    monkeypatch.setattr(image_module.urllib.request, "urlopen", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"https://example\.com/cat\.jpg.*offline.*local path.*PIL\.Image\.open"):
        pixels_of(image_processor, "https://example.com/cat.jpg")


def test_a_failing_url_names_it_and_the_fix(image_processor, monkeypatch):
    def timeout(url, timeout):
        assert timeout == image_module.URL_TIMEOUT_SECONDS  # never an unbounded wait
        raise TimeoutError("timed out")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(image_module.urllib.request, "urlopen", timeout)
    with pytest.raises(ValueError, match=r"Cannot fetch image URL 'http://example\.com/a\.png': TimeoutError.*local"):
        pixels_of(image_processor, "http://example.com/a.png")


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (None, TypeError, r"No image given \(`None`\)"),
        (3, TypeError, r"Unsupported image type int"),
        ({"image": "a.png"}, TypeError, r"Unsupported image type dict"),
        (RGB > 100, TypeError, r"boolean"),
        (np.zeros((0, 5, 3), np.uint8), ValueError, r"no pixels"),
        (np.zeros((1, 1, 3, 4, 4), np.uint8), ValueError, r"shape \(1, 1, 3, 4, 4\)"),
        (np.zeros((5, 6, 7), np.uint8), ValueError, r"no axis of 1-4 channels"),
        (RGB.astype(np.float32) / 127.5 - 1, ValueError, r"float values in \[-1, 1\].*normalised already"),
        (RGB.astype(np.float32) * 2, ValueError, r"float values in \[0, \d+\]"),
        (np.full((4, 4, 3), np.nan, np.float32), ValueError, r"NaN"),
        (RGB.astype(np.int32) * 300, ValueError, r"integer values in \[0, 76500\].*uint16"),
        (PIL.Image.fromarray(GREY.astype(np.int32) * 300), ValueError, r"PIL image \(mode 'I'.*integer values"),
        (torch.zeros(3, 4, 4, dtype=torch.complex64), TypeError, r"dtype complex64"),
    ],
    ids=["none", "int", "dict", "bool", "empty", "5d", "no-channels", "normalised", "over-255", "nan", "int-range",
         "pil-I-range", "complex"],
)
def test_bad_images_raise_naming_what_is_wrong(image_processor, image, error, message):
    with pytest.raises(error, match=message):
        pixels_of(image_processor, image)
