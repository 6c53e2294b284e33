"""One image reader for every image binsight opens: the ``binsight explain`` inputs and image folders.

:func:`read_image` turns a file into float32 pixels (H, W, C) in [0, 1] with C = 1 (grayscale) or 3 (RGB):

* 8-bit values are divided by 255, 16-bit grayscale (PNG, TIFF; Pillow modes ``I;16*``) by 65535 and
  32-bit integer images (mode ``I``) by 65535 when every value lies in 0..65535; float images (mode ``F``)
  must already lie in [0, 1]. Anything else is refused, never clipped.
* Palette images are looked up in their palette (RGB, or grayscale when every entry is gray); an alpha
  channel (LA, RGBA, PA) is dropped and the colour values kept as stored, with a notice when some pixel
  is not fully opaque. The EXIF orientation of a photo is applied.
* Only the decoders in :data:`FORMATS` are used. The size a file declares is checked before any pixel is decoded: more than ``max_pixels`` pixels
  (default :data:`MAX_PIXELS`) is refused, so a small file declaring a huge image (a decompression bomb)
  costs only its header.

:func:`fit_image` then converts the channels and brings the pixels to the model's (H, W): ``fit="pad"``
(default) scales the image to fit inside and pads it with black, centred, keeping the aspect ratio;
``"crop"`` scales it to cover and cuts the centre; ``"stretch"`` resizes to (H, W) ignoring the aspect
ratio; ``"refuse"`` raises unless the image already has the model's size (nothing is resized). Resizing is
bilinear and antialiased (on float values, so 16-bit precision survives); masks use nearest neighbour
(:func:`resize_fit`). No image larger than the input or the output is ever made: a crop resamples only the
part of the image it keeps (the same pixels as scaling the whole image, then cutting), and an output of
more than :data:`MAX_PIXELS` pixels is refused.

Each step returns notices (one line each, naming the file) for what it changed: a colour conversion, a
resize, ignored transparency. Callers print them (``binsight explain``) or drop them (datasets).
Every failure raises :class:`ImageReadError`, whose message names the file, its size where known, and what
to do.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from binsight.data.dataset import DatasetError
from binsight.errors import BinsightError

MAX_PIXELS = 64 * 2**20
"""Largest image (width x height) read by default: 67,108,864 pixels, e.g. 8192 x 8192."""

FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP")
"""The only decoders binsight lets Pillow use (never, e.g., EPS, which runs Ghostscript)."""
FITS = ("pad", "crop", "stretch", "refuse")
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""RGB -> grayscale weights (ITU-R BT.601, as Pillow's ``convert("L")``)."""

_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_MODES = (*_UINT16_MODES, "I", "F", "1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")


class ImageReadError(DatasetError, BinsightError):
    """An image file that cannot be read, is too large, or cannot be brought to the model's input."""


def open_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The decoded first frame of image file ``path`` (EXIF orientation applied), as a Pillow image.

    The declared width x height is checked against ``max_pixels`` before any pixel is decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: {_declared(e)}, more than binsight reads ({max_pixels:,} pixels); "
                             "it may be a decompression bomb: shrink the image or check where it came from") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read {path} as an image (not a {', '.join(FORMATS)} file); give a PNG, "
                             "JPEG or TIFF file") from None
    except Exception as e:  # Pillow raises many types for hostile headers; all mean "not an image"
        raise ImageReadError(f"cannot read {path} as an image ({_why(e)}); give a PNG, JPEG or TIFF file") from None
    with img:
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageReadError(f"{path} declares an empty image ({width}x{height} pixels)")
        if width * height > max_pixels:
            raise ImageReadError(f"{path} declares {width}x{height} = {width * height:,} pixels, more than binsight "
                                 f"reads ({max_pixels:,}); it may be a decompression bomb: shrink the image or "
                                 "check where it came from")
        try:
            img.load()
            return ImageOps.exif_transpose(img)
        except Exception as e:  # truncated data, bad chunks, bad EXIF: Pillow's types vary by format
            raise ImageReadError(f"cannot decode {path} ({width}x{height} {img.format or ''} image: {_why(e)}); "
                                 "the file is damaged or truncated, replace it") from None


def _declared(error: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(error))
    return f"the image declares {int(found.group(1)):,} pixels" if found else "the image declares too many pixels"


def _why(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """(pixels, notices): float32 (H, W, C) in [0, 1], C = 1 or 3, and what was dropped (transparency)."""
    path = Path(path)
    return pixels_of(open_image(path, max_pixels=max_pixels), path.name)


def pixels_of(img: Image.Image, name: str = "image") -> tuple[np.ndarray, list[str]]:
    """(pixels, notices) of a decoded Pillow image: float32 (H, W, 1 or 3) in [0, 1]; see the module doc."""
    if img.mode not in _MODES:
        raise ImageReadError(f"{name}: pixel mode {img.mode!r} ({img.width}x{img.height}) is not one binsight reads; "
                             "save the image as an 8- or 16-bit PNG")
    notices = []
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA" if img.mode.startswith("P") else img.mode).getchannel("A"))
        if alpha.min() < 255:
            notices.append(f"{name}: transparency ignored (colour values kept as stored)")
    mode = img.mode
    if mode in _UINT16_MODES:
        arr = np.asarray(img).astype(np.float32) / 65535.0
    elif mode == "I":
        arr = _int32_pixels(np.asarray(img), name)
    elif mode == "F":
        arr = _float_pixels(np.asarray(img, dtype=np.float32), name)
    elif mode in ("1", "L", "LA", "La"):
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    else:  # RGB, RGBA, RGBX, CMYK, YCbCr, LAB, HSV, P, PA
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        if mode in ("P", "PA") and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., :1]  # a gray palette holds grayscale values
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr, dtype=np.float32), notices


def _int32_pixels(arr: np.ndarray, name: str) -> np.ndarray:
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high > 65535:
        raise ImageReadError(f"{name}: 32-bit integer pixels range {low}..{high}; binsight reads integer images "
                             "of at most 16 bits (0..65535): save it as 8- or 16-bit PNG")
    return arr.astype(np.float32) / 65535.0


def _float_pixels(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ImageReadError(f"{name}: float pixels range {np.nanmin(arr):g}..{np.nanmax(arr):g} (or are not "
                             "finite); float images must hold values in [0, 1]: rescale it or save it as PNG")
    return arr


def convert_channels(pixels: np.ndarray, channels: int, name: str = "image") -> tuple[np.ndarray, list[str]]:
    """(pixels with ``channels`` (1 or 3) channels, notices): RGB -> gray by :data:`GRAY_WEIGHTS`, gray -> RGB
    by repetition."""
    have = pixels.shape[2]
    if have == channels:
        return pixels, []
    if channels == 1 and have == 3:
        return (pixels @ GRAY_WEIGHTS)[:, :, None], [f"{name}: converted from RGB to grayscale (the model takes 1 channel)"]
    if channels == 3 and have == 1:
        return np.repeat(pixels, 3, axis=2), [f"{name}: converted from grayscale to RGB (the model takes 3 channels)"]
    raise ImageReadError(f"{name}: cannot convert an image with {have} channels to {channels}; "
                         "the model must take 1 (grayscale) or 3 (RGB) channels")


def fit_image(pixels: np.ndarray, *, channels: int, size: tuple[int, int] | None, fit: str = "pad",
              name: str = "image") -> tuple[np.ndarray, list[str]]:
    """(pixels float32 (H, W, channels) in [0, 1], notices) for a model taking ``channels`` x ``size``
    (None: any size, kept as is); ``fit`` as in the module docstring."""
    pixels, notices = convert_channels(pixels, channels, name)
    if size is None or tuple(pixels.shape[:2]) == tuple(size):
        return np.ascontiguousarray(pixels, dtype=np.float32), notices
    resized = resize_fit(pixels, size, fit=fit, name=name)
    (h, w), (th, tw) = pixels.shape[:2], size
    how = {"pad": "scaled and padded with black (aspect ratio kept)", "crop": "scaled and centre-cropped",
           "stretch": "stretched", "refuse": "scaled"}[fit]
    notices.append(f"{name}: resized from {w}x{h} to {tw}x{th} pixels, {how}")
    return resized, notices


def load_image(path: str | os.PathLike, *, channels: int, size: tuple[int, int] | None, fit: str = "pad",
               max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """:func:`read_image` then :func:`fit_image`: (float32 (H, W, channels) in [0, 1], notices)."""
    pixels, notices = read_image(path, max_pixels=max_pixels)
    fitted, more = fit_image(pixels, channels=channels, size=size, fit=fit, name=Path(path).name)
    return fitted, notices + more


def resize_fit(array: np.ndarray, size: tuple[int, int], *, fit: str = "pad", nearest: bool = False,
               name: str = "image") -> np.ndarray:
    """``array`` (h, w) or (h, w, C) brought to ``size`` = (H, W) as ``fit`` says; float32.

    Bilinear and antialiased, or nearest neighbour with ``nearest`` (masks). Pad fills with 0. Memory: the
    input and the (H, W) output, nothing larger (a crop resamples only the part it keeps).
    """
    if fit not in FITS:
        raise ImageReadError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    th, tw = (int(s) for s in size)
    h, w = array.shape[:2]
    if th * tw > MAX_PIXELS:
        raise ImageReadError(f"{name}: an output of {tw}x{th} = {th * tw:,} pixels is more than binsight makes "
                             f"({MAX_PIXELS:,}); choose a smaller image size")
    if fit == "refuse" and (h, w) != (th, tw):
        why = "the aspect ratios differ" if h * tw != w * th else "fit 'refuse' does not resize"
        raise ImageReadError(f"{name} is {w}x{h} pixels and the model takes {tw}x{th}: {why}; resize or crop the "
                             "image yourself, or choose fit 'pad', 'crop' or 'stretch'")
    if fit in ("stretch", "refuse"):
        return _resize(array, th, tw, nearest)
    scale = (min if fit == "pad" else max)(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if fit == "crop":
        return _cover_and_cut(array, (th, tw), (max(th, nh), max(tw, nw)), nearest)
    nh, nw = min(th, nh), min(tw, nw)
    out = np.zeros((th, tw, *array.shape[2:]), dtype=np.float32)
    top, left = (th - nh) // 2, (tw - nw) // 2
    out[top:top + nh, left:left + nw] = _resize(array, nh, nw, nearest)
    return out


def _cover_and_cut(array: np.ndarray, size: tuple[int, int], cover: tuple[int, int], nearest: bool) -> np.ndarray:
    """The centre (H, W) = ``size`` of ``array`` resized to ``cover`` = (nh, nw), computed without making the
    (nh, nw) image: only the source box that the centre covers is resampled (Pillow's ``box``), with the
    filter reading the pixels around the box as it would in the whole image."""
    (th, tw), (nh, nw), (h, w) = size, cover, array.shape[:2]
    top, left = (nh - th) // 2, (nw - tw) // 2
    if (nh, nw) == (h, w):
        return np.array(array[top:top + th, left:left + tw], dtype=np.float32)
    box = (left * w / nw, top * h / nh, (left + tw) * w / nw, (top + th) * h / nh)
    return _resize(array, th, tw, nearest, box=box)


def _resize(array: np.ndarray, h: int, w: int, nearest: bool,
            box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """``array`` (or its ``box`` = (x0, y0, x1, y1) in source pixels) resampled to (h, w), one plane at a time."""
    array = np.asarray(array, dtype=np.float32)
    if array.shape[:2] == (h, w) and box is None:
        return array.copy()
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    planes = array[:, :, None] if array.ndim == 2 else array
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[:, :, c])).resize((w, h), resample, box))
                    for c in range(planes.shape[2])], axis=2)
    return out[:, :, 0] if array.ndim == 2 else out
