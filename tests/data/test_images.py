"""binsight.data.images: one reader for 8/16-bit, palette and alpha images, a pixel limit, fit and notices."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from binsight.data.images import ImageReadError, fit_image, load_image, read_image, resize_fit
from binsight.errors import BinsightError


def png_bytes(width: int, height: int, rows: bytes, color_type: int = 0, depth: int = 8) -> bytes:
    """A PNG by hand: IHDR declaring width x height, one IDAT holding zlib(rows), IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_hand_made_png_reads_back(tmp_path):  # the helper itself makes valid PNGs
    path = tmp_path / "two.png"
    path.write_bytes(png_bytes(2, 1, b"\x00\x00\xff"))
    pixels, notices = read_image(path)
    assert pixels.shape == (1, 2, 1) and pixels[0, :, 0].tolist() == [0.0, 1.0] and notices == []


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, suffix):
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    pixels, _ = read_image(path)
    assert pixels.dtype == np.float32 and pixels.shape == (1, 4, 1)
    np.testing.assert_allclose(pixels[0, :, 0], values[0] / 65535.0, rtol=1e-6)


def test_palette_images_are_looked_up(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    colour = Image.fromarray(rgb).quantize(colors=2)
    colour.save(tmp_path / "colour.png")
    pixels, _ = read_image(tmp_path / "colour.png")
    np.testing.assert_array_equal(pixels, rgb / 255.0)
    gray = Image.new("P", (2, 1))
    gray.putpalette([10, 10, 10, 200, 200, 200] + [0] * 762)
    gray.putdata([0, 1])
    gray.save(tmp_path / "gray.png")
    pixels, _ = read_image(tmp_path / "gray.png")
    np.testing.assert_allclose(pixels[0, :, 0], [10 / 255, 200 / 255], rtol=1e-6)
    assert pixels.shape == (1, 2, 1)  # a gray palette gives one channel


def test_alpha_is_dropped_with_a_notice(tmp_path):
    la = np.array([[[40, 255], [80, 0]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    pixels, notices = read_image(tmp_path / "la.png")
    np.testing.assert_allclose(pixels[0, :, 0], [40 / 255, 80 / 255], rtol=1e-6)
    assert notices == ["la.png: transparency ignored (colour values kept as stored)"]
    rgba = np.array([[[255, 0, 0, 255], [0, 255, 0, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    pixels, notices = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(pixels, rgba[..., :3] / 255.0)
    assert notices == []  # fully opaque: nothing was dropped


def test_float_tiff_outside_unit_range_is_refused(tmp_path):
    Image.fromarray(np.array([[0.0, 3.5]], dtype=np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=r"f\.tif: float pixels range 0\.\.3\.5"):
        read_image(tmp_path / "f.tif")
    Image.fromarray(np.array([[0.0, 0.25]], dtype=np.float32)).save(tmp_path / "ok.tif")
    assert read_image(tmp_path / "ok.tif")[0][0, :, 0].tolist() == [0.0, 0.25]


@pytest.mark.parametrize("suffix,side", [(".png", 20000), (".png", 10000), (".tif", 20000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch, suffix, side):
    path = tmp_path / f"bomb{suffix}"
    if suffix == ".png":
        path.write_bytes(png_bytes(side, side, b"\x00" * (side + 1)))  # declares side^2 pixels, holds one row
    else:
        Image.new("L", (4, 4)).save(path)
        raw = bytearray(path.read_bytes())  # patch ImageWidth / ImageLength (LONG) of the one IFD
        for tag in (256, 257):
            at = raw.find(struct.pack("<HHI", tag, 4, 1))
            raw[at + 8:at + 12] = struct.pack("<I", side)
        path.write_bytes(bytes(raw))

    def never(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    pixels = f"{side * side:,} pixels, more than binsight reads"
    with pytest.raises(ImageReadError, match=rf"bomb\.(png|tif):? .*declares ({side}x{side} = )?{pixels}"):
        read_image(path)


def test_pixel_limit_is_a_keyword(tmp_path):
    Image.new("L", (10, 10)).save(tmp_path / "s.png")
    with pytest.raises(ImageReadError, match="10x10 = 100 pixels, more than binsight reads \\(99\\)"):
        read_image(tmp_path / "s.png", max_pixels=99)
    assert read_image(tmp_path / "s.png", max_pixels=100)[0].shape == (10, 10, 1)


def test_unreadable_files_are_binsight_errors(tmp_path):
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(BinsightError, match=r"cannot read .*t\.png as an image"):
        read_image(tmp_path / "t.png")
    with pytest.raises(BinsightError, match="image not found"):
        read_image(tmp_path / "none.png")
    good = tmp_path / "g.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(BinsightError, match=r"cannot decode .*cut\.png \(64x64 PNG image"):
        read_image(tmp_path / "cut.png")


def test_fit_pad_keeps_aspect_ratio_with_a_notice():
    white = np.ones((10, 20, 1), np.float32)  # 20 wide, 10 high
    out, notices = fit_image(white, channels=1, size=(8, 8), name="w.png")
    assert out.shape == (8, 8, 1)
    assert np.allclose(out[2:6, :, 0], 1.0) and not out[:2].any() and not out[6:].any()  # 8x4 band, centred
    assert notices == ["w.png: resized from 20x10 to 8x8 pixels, scaled and padded with black (aspect ratio kept)"]
    stretched, _ = fit_image(white, channels=1, size=(8, 8), fit="stretch")
    assert np.allclose(stretched, 1.0)
    cropped = resize_fit(np.tile(np.arange(20, dtype=np.float32), (10, 1)), (10, 10), fit="crop")
    assert cropped[0].tolist() == list(range(5, 15))
    with pytest.raises(ImageReadError, match="w.png is 20x10 pixels and the model takes 8x8: the aspect ratios differ"):
        fit_image(white, channels=1, size=(8, 8), fit="refuse", name="w.png")
    with pytest.raises(ImageReadError, match=r"w.png is 20x10 pixels and the model takes 10x5: fit 'refuse' "
                                             r"does not resize"):
        fit_image(white, channels=1, size=(5, 10), fit="refuse", name="w.png")
    assert fit_image(white, channels=1, size=(10, 20), fit="refuse")[0].shape == (10, 20, 1)
    with pytest.raises(ImageReadError, match="fit must be one of pad, crop, stretch, refuse"):
        fit_image(white, channels=1, size=(8, 8), fit="zoom")


def test_channel_conversion_notices(tmp_path):
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 1] = 1.0
    gray, notices = fit_image(rgb, channels=1, size=(4, 4), name="g.png")
    np.testing.assert_allclose(gray, 0.587, rtol=1e-6)
    assert notices == ["g.png: converted from RGB to grayscale (the model takes 1 channel)"]
    assert fit_image(gray, channels=1, size=(4, 4))[1] == []  # nothing changed, nothing said
    Image.fromarray(np.full((6, 3), 128, np.uint8)).save(tmp_path / "m.png")
    pixels, notices = load_image(tmp_path / "m.png", channels=3, size=(6, 6))
    assert pixels.shape == (6, 6, 3) and len(notices) == 2 and notices[0].startswith("m.png: converted from grayscale")


def test_16_bit_precision_survives_resizing():
    values = np.full((4, 4, 1), 1000 / 65535, np.float32)  # below one 8-bit step
    out = resize_fit(values, (2, 2), fit="stretch")
    np.testing.assert_allclose(out, 1000 / 65535, rtol=1e-5)


def test_only_common_formats_are_decoded(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "x.eps")  # EPS would be decoded by running Ghostscript
    Image.new("L", (4, 4)).save(tmp_path / "x.pcx")
    for name in ("x.eps", "x.pcx"):
        with pytest.raises(ImageReadError, match=rf"cannot read .*{name} as an image \(not a PNG, JPEG, TIFF"):
            read_image(tmp_path / name)
    Image.new("L", (4, 4), 255).save(tmp_path / "x.bmp")
    assert read_image(tmp_path / "x.bmp")[0].min() == 1.0


def reference_crop(array: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """The plain definition of fit "crop": resize the whole image to cover ``size``, cut the centre."""
    from binsight.data.images import _resize

    (h, w), (th, tw) = array.shape[:2], size
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    top, left = (nh - th) // 2, (nw - tw) // 2
    return _resize(array, nh, nw, nearest)[top:top + th, left:left + tw]


@pytest.mark.parametrize("shape", [(10, 20), (37, 23), (7, 7), (50, 9), (3, 40)])
@pytest.mark.parametrize("nearest", [False, True])
def test_crop_equals_resize_then_cut(shape, nearest):
    image = np.random.default_rng(sum(shape)).random((*shape, 3), dtype=np.float32)
    if nearest:
        image = image[..., 0]
    for size in ((8, 8), (16, 12), (5, 30)):
        got = resize_fit(image, size, fit="crop", nearest=nearest)
        want = reference_crop(image, size, nearest)
        assert got.shape == want.shape == (*size, *image.shape[2:])
        if not nearest:
            np.testing.assert_allclose(got, want, atol=2e-6)
            continue
        # nearest neighbour: a sample point on a pixel boundary (a tie) may round either way
        rows, cols = (tie_points(n, t, s) for n, t, s in zip(shape, size, cover_size(shape, size)))
        differ = got != want
        assert not differ[~rows[:, None] & ~cols[None, :]].any()


def cover_size(shape, size):
    scale = max(size[0] / shape[0], size[1] / shape[1])
    return max(size[0], round(shape[0] * scale)), max(size[1], round(shape[1] * scale))


def tie_points(source: int, target: int, cover: int) -> np.ndarray:
    """bool (target,): the output pixels of a centre cut whose nearest-neighbour sample lies on a boundary."""
    at = ((cover - target) // 2 + np.arange(target) + 0.5) * source / cover
    return np.abs(at - np.round(at)) < 1e-6


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_no_intermediate_image_larger_than_input_or_output(fit):
    import tracemalloc

    line = np.random.default_rng(0).random((1, 50_000, 1), dtype=np.float32)  # 200 KB; cover-scaled: 51 MB
    tracemalloc.start()
    try:
        out = resize_fit(line, (16, 16), fit=fit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (16, 16, 1)
    assert peak < 4 * line.nbytes


LINE_PNG = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
from binsight.data import load_dataset
from binsight.data.images import load_image
pixels, _ = load_image(sys.argv[1] + "/line/a/line.png", channels=1, size=(28, 28), fit="crop")
assert pixels.shape == (28, 28, 1), pixels.shape
data = load_dataset("image-folder", root=sys.argv[1] + "/line", size=28, channels=3)  # the reader's crop
assert tuple(data.images.shape) == (1, 3, 28, 28), data.images.shape
print("ok")
"""


def test_a_one_pixel_high_png_of_two_million_pixels_crops_in_little_memory(tmp_path):
    """The issue's case: a PNG of 1 x 2,000,000 pixels (a few KB) fitted by crop, by ``--fit crop`` and by
    the image-folder reader's default, once became 6 GB of floats (resized to cover 28 x 28 before the
    cut). Run in a process whose address space is capped a gigabyte above what importing torch takes, so
    that a regression fails with a MemoryError instead of filling the machine's memory."""
    import subprocess
    import sys

    folder = tmp_path / "line" / "a"
    folder.mkdir(parents=True)
    line = np.tile(np.arange(256, dtype=np.uint8), 2_000_000 // 256 + 1)[:2_000_000].reshape(1, -1)
    Image.fromarray(line).save(folder / "line.png")
    assert (folder / "line.png").stat().st_size < 64 * 1024
    code = LINE_PNG.replace("CAP", str(2 * 2**30))
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_output_size_is_bounded_by_the_pixel_limit():
    with pytest.raises(ImageReadError, match=r"100000x100000 .* more than binsight makes"):
        resize_fit(np.zeros((2, 2, 1), np.float32), (100_000, 100_000), fit="stretch")
