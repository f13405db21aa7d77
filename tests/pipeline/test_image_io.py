"""load_image / read_image_size / image_sha256: every odd mode and every bad file."""
from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.image_io import ImageLoadError, image_sha256, load_image, read_image_size


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def _gradient_rgb(w: int = 40, h: int = 30) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None].repeat(w, 1)
    return np.stack([x, y, 255 - x], axis=2).round().astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (1-bit grey), with a tiny IDAT: costs nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def test_rgb_png_round_trip_exact(tmp_path):
    arr = _gradient_rgb()
    out = load_image(_save(Image.fromarray(arr), tmp_path / "a.png"))
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, arr)


def test_bytes_and_path_give_same_pixels(tmp_path):
    p = _save(Image.fromarray(_gradient_rgb()), tmp_path / "a.jpg", quality=90)
    np.testing.assert_array_equal(load_image(p), load_image(p.read_bytes()))
    np.testing.assert_array_equal(load_image(str(p)), load_image(p))


def test_cmyk_jpeg_converted_to_rgb(tmp_path):
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[:, :10] = (255, 0, 0)
    rgb[:, 10:] = (0, 0, 255)
    p = _save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "c.jpg", quality=95)
    assert Image.open(p).mode == "CMYK"
    out = load_image(p)
    assert out.shape == (20, 20, 3)
    assert np.abs(out[10, 3].astype(int) - (255, 0, 0)).max() < 30
    assert np.abs(out[10, 16].astype(int) - (0, 0, 255)).max() < 30


def test_cmyk_tiff(tmp_path):
    p = _save(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), tmp_path / "c.tif")  # C0 M100 Y100 = red
    out = load_image(p)
    assert out.shape == (6, 8, 3)
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_16bit_grey_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)[None, :].repeat(4, 0)
    im = Image.fromarray(ramp)
    assert im.mode.startswith("I;16")
    out = load_image(_save(im, tmp_path / "g16.png"))
    assert out.shape == (4, 256, 3)
    grey = out[..., 0].astype(int)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert grey[0, 0] == 0 and grey[0, -1] == 255
    # Scaled (v * 255 / 65535): mid-grey stays mid-grey, and the ramp is monotone with many levels.
    assert abs(grey[0, 128] - 128) <= 1
    assert (np.diff(grey[0]) >= 0).all() and len(np.unique(grey)) > 200


def test_16bit_dark_image_is_not_saturated(tmp_path):
    # A value of 1000 out of 65535 must be dark (~4), not clipped to 255 as naive casts would.
    arr = np.full((5, 5), 1000, np.uint16)
    out = load_image(_save(Image.fromarray(arr), tmp_path / "dark16.png"))
    assert out.max() <= 5


def test_int32_mode_I_stretched(tmp_path):
    arr = np.array([[-1000, 0], [500, 3000]], np.int32)
    im = Image.fromarray(arr, mode="I")
    out = load_image(_save(im, tmp_path / "i32.tif"))
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 255
    assert 0 < out[0, 1, 0] < out[1, 0, 0] < 255


def test_float_mode_F(tmp_path):
    arr = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    out = load_image(_save(Image.fromarray(arr, mode="F"), tmp_path / "f.tif"))
    assert out[..., 0].tolist() == [[0, 128], [255, 64]]


def test_one_bit(tmp_path):
    arr = np.zeros((8, 8), bool)
    arr[:, 4:] = True
    im = Image.fromarray(arr)
    assert im.mode == "1"
    out = load_image(_save(im, tmp_path / "b.png"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 7].tolist() == [255, 255, 255]


def test_palette_with_transparency_composited_on_white(tmp_path):
    im = Image.new("P", (10, 10), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    im.paste(1, (5, 0, 10, 10))
    im.info["transparency"] = 0  # index 0 (red) is transparent
    p = _save(im, tmp_path / "p.png", transparency=0)
    assert Image.open(p).mode == "P" and "transparency" in Image.open(p).info
    out = load_image(p)
    assert out[5, 2].tolist() == [255, 255, 255]  # transparent -> white, not red
    assert out[5, 7].tolist() == [0, 255, 0]


def test_palette_gif_without_transparency(tmp_path):
    im = Image.fromarray(_gradient_rgb()).convert("P")
    out = load_image(_save(im, tmp_path / "p.gif"))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))  # the palette colours, exactly
    assert len(np.unique(out.reshape(-1, 3), axis=0)) > 10  # a gradient, not one colour


def test_la_composited_on_white(tmp_path):
    grey = np.full((4, 4), 0, np.uint8)
    alpha = np.array([[0, 0, 255, 255]] * 4, np.uint8)
    im = Image.fromarray(np.stack([grey, alpha], axis=2), mode="LA")
    out = load_image(_save(im, tmp_path / "la.png"))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 3].tolist() == [0, 0, 0]


def test_rgba_half_transparent_blended_with_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[..., 3] = 128  # half transparent
    rgba[:, :2, 3] = 255  # left half opaque
    out = load_image(_save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 3, 0] == 255 and 120 <= out[0, 3, 1] <= 135  # red over white at 50%


def _with_orientation(arr: np.ndarray, orientation: int, path: Path) -> Path:
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("orientation, rot_k", [(6, -1), (8, 1), (3, 2), (1, 0)])
def test_exif_orientation(tmp_path, orientation, rot_k):
    arr = np.zeros((40, 60, 3), np.uint8)  # landscape, stored as the camera saw it
    arr[:20, :30] = (255, 0, 0)  # red top-left block marks orientation
    p = _with_orientation(arr, orientation, tmp_path / f"o{orientation}.jpg")
    out = load_image(p)
    expected = np.rot90(arr, k=rot_k)  # orientation 6 = rotate 90 cw to display
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 8
    w, h = read_image_size(p)
    assert (h, w) == out.shape[:2]


def test_read_image_size_reads_header_only(tmp_path):
    p = _save(Image.fromarray(_gradient_rgb(50, 20)), tmp_path / "a.png")
    assert read_image_size(p) == (50, 20)
    assert read_image_size(p.read_bytes()) == (50, 20)


def _jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_bytes() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("maker, fraction", [(_jpeg_bytes, 0.5), (_jpeg_bytes, 0.9), (_png_bytes, 0.5), (_png_bytes, 0.95)])
def test_truncated_files_refused(tmp_path, maker, fraction):
    data = maker()
    p = tmp_path / "cut.img"
    p.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageLoadError) as info:
        load_image(p)
    msg = str(info.value)
    assert "cut.img" in msg and ("truncated" in msg or "corrupt" in msg)


def test_truncated_jpeg_message_says_truncated(tmp_path):
    data = _jpeg_bytes()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(p)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("random.jpg", np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
        ("empty.png", b"", "empty"),
        ("notes.txt", b"hello, this is text\n" * 20, "not an image"),
    ],
)
def test_non_images_refused_with_file_and_reason(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageLoadError) as info:
        load_image(p)
    assert name in str(info.value) and reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(20000, 20000))  # 400 MP claimed, a few bytes on disk
    with pytest.raises(ImageLoadError, match="bomb"):
        load_image(p)
    p.write_bytes(_png_header_only(11000, 11000))  # 121 MP: over our limit, under Pillow's
    with pytest.raises(ImageLoadError, match="121,000,000 pixels exceeds the limit"):
        load_image(p)
    with pytest.raises(ImageLoadError, match="bomb"):
        read_image_size(p)


def test_max_pixels_is_per_call(tmp_path):
    p = _save(Image.fromarray(_gradient_rgb(40, 30)), tmp_path / "a.png")
    with pytest.raises(ImageLoadError, match="1,200 pixels exceeds the limit of 1,000"):
        load_image(p, max_pixels=1000)
    assert load_image(p, max_pixels=1200).shape == (30, 40, 3)
    assert load_image(p).shape == (30, 40, 3)  # the default limit is untouched


def test_pillow_global_bomb_error_is_converted(tmp_path):
    # Beyond twice Pillow's own global limit, Pillow raises DecompressionBombError inside open().
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(p, max_pixels=10**12)


def test_real_compressed_bomb(tmp_path):
    # A genuine image (1-bit, all black) that compresses ~1000:1: 12000 x 12000 = 144 MP.
    p = tmp_path / "real_bomb.png"
    Image.new("1", (12000, 12000), 0).save(p, optimize=False)
    assert p.stat().st_size < 200_000
    with pytest.raises(ImageLoadError, match="144,000,000 pixels"):
        load_image(p)


def test_image_sha256_matches_hashlib(tmp_path):
    p = tmp_path / "x.bin"
    data = b"abc" * 1000
    p.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert image_sha256(p) == expected == image_sha256(data) == image_sha256(str(p))


def test_messages_name_the_file_not_the_server_folder(tmp_path):
    """Upload paths are server temp folders: a browser user can act on the file name only."""
    from pipeline.image_io import ImageLoadError, load_image

    folder = tmp_path / "gradio-temp" / "3f9a0c"
    folder.mkdir(parents=True)
    bad = folder / "holiday.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError) as info:
        load_image(bad)
    assert "'holiday.jpg'" in str(info.value) and str(folder) not in str(info.value)
    big = folder / "panorama.png"
    Image.new("RGB", (40, 30)).save(big)
    with pytest.raises(ImageLoadError, match="downscale it to at most") as info:
        load_image(big, max_pixels=1000)
    assert str(folder) not in str(info.value) and "max_pixels" not in str(info.value)
