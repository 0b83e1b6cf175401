"""Image decoding: every pixel mode to RGB uint8, EXIF orientation, reduced-size decoding, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoctx.data.images import ImageError, image_size, load_rgb, read_image
from emoctx.errors import EmoctxError


def _halves(w: int = 60, h: int = 40) -> np.ndarray:
    """Left half red, right half blue."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2 :] = (0, 0, 255)
    return a


def _assert_rgb(a: np.ndarray, shape: tuple[int, int]) -> None:
    assert a.dtype == np.uint8
    assert a.shape == (*shape, 3)


def test_rgb_jpeg(tmp_path):
    p = tmp_path / "a.jpg"
    Image.fromarray(_halves()).save(p, quality=95)
    a = load_rgb(p)
    _assert_rgb(a, (40, 60))
    assert a[20, 5, 0] > 200 and a[20, 5, 2] < 50  # red on the left
    assert a[20, 55, 2] > 200 and a[20, 55, 0] < 50  # blue on the right


def test_grayscale_png(tmp_path):
    p = tmp_path / "g.png"
    g = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
    Image.fromarray(g, mode="L").save(p)
    a = load_rgb(p)
    _assert_rgb(a, g.shape)
    for c in range(3):
        np.testing.assert_array_equal(a[..., c], g)


def test_one_bit_png(tmp_path):
    p = tmp_path / "b.png"
    Image.fromarray(np.eye(8, dtype=bool)).save(p)
    a = load_rgb(p)
    _assert_rgb(a, (8, 8))
    assert a[0, 0].tolist() == [255, 255, 255] and a[0, 1].tolist() == [0, 0, 0]


def test_rgba_composited_on_white(tmp_path):
    p = tmp_path / "t.png"
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 255, 0, 0)  # fully transparent
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black
    Image.fromarray(rgba, mode="RGBA").save(p)
    a = load_rgb(p)
    _assert_rgb(a, (4, 4))
    assert a[0, 0].tolist() == [255, 0, 0]
    assert a[0, 1].tolist() == [255, 255, 255]
    assert 120 <= a[0, 2, 0] <= 135 and a[0, 2, 0] == a[0, 2, 1] == a[0, 2, 2]
    black = read_image(p, background=(0, 0, 0)).pixels
    assert black[0, 1].tolist() == [0, 0, 0]


def test_la_and_palette(tmp_path):
    la = np.zeros((2, 2, 2), np.uint8)
    la[0, 0] = (100, 255)
    la[0, 1] = (0, 0)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    a = load_rgb(tmp_path / "la.png")
    assert a[0, 0].tolist() == [100, 100, 100] and a[0, 1].tolist() == [255, 255, 255]

    pal = Image.fromarray(_halves()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.save(tmp_path / "p.png")
    b = load_rgb(tmp_path / "p.png")
    _assert_rgb(b, (40, 60))
    assert b[0, 0].tolist() == [255, 0, 0] and b[0, 59].tolist() == [0, 0, 255]

    gif = Image.fromarray(_halves()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    gif.save(tmp_path / "t.gif", transparency=gif.getpixel((0, 0)))
    c = load_rgb(tmp_path / "t.gif")
    assert c[0, 0].tolist() == [255, 255, 255]  # the transparent palette entry
    assert c[0, 59].tolist() == [0, 0, 255]


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "c.jpg"
    Image.fromarray(_halves()).convert("CMYK").save(p, quality=95)
    with Image.open(p) as im:
        assert im.mode == "CMYK"
    a = load_rgb(p)
    _assert_rgb(a, (40, 60))
    assert a[20, 5, 0] > 200 and a[20, 5, 2] < 60
    assert a[20, 55, 2] > 200 and a[20, 55, 0] < 60


def test_16bit_png_is_rescaled_not_clipped(tmp_path):
    p = tmp_path / "d.png"
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    Image.fromarray(ramp).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    a = load_rgb(p)
    _assert_rgb(a, ramp.shape)
    assert a[0, 0, 0] == 0 and a[0, -1, 0] == 255
    assert 125 <= a[0, 128, 0] <= 130  # mid-grey, where a clipping conversion would give 255
    assert np.all(np.diff(a[0, :, 0].astype(int)) >= 0)


def test_32bit_integer_image(tmp_path):
    p = tmp_path / "i.tif"
    Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32), mode="I").save(p)
    a = load_rgb(p)
    assert a[0, :, 0].tolist() == [0, 4, 255]


def test_exif_orientation_applied(tmp_path):
    p = tmp_path / "r.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(_halves(60, 40)).save(p, exif=exif, quality=95)
    a = load_rgb(p)
    _assert_rgb(a, (60, 40))  # width and height swapped
    assert a[5, 20, 0] > 200 and a[5, 20, 2] < 50  # the stored left (red) half is now on top
    assert a[55, 20, 2] > 200 and a[55, 20, 0] < 50  # blue at the bottom
    assert image_size(p) == (40, 60)
    d = read_image(p)
    assert d.orientation == 6 and d.oriented and d.original_size == (40, 60)
    raw = read_image(p, apply_orientation=False)
    assert raw.pixels.shape == (40, 60, 3) and raw.original_size == (60, 40) and not raw.oriented


def test_exif_mirror_orientation(tmp_path):
    p = tmp_path / "m.jpg"
    exif = Image.Exif()
    exif[0x0112] = 2  # mirrored left-right
    Image.fromarray(_halves(60, 40)).save(p, exif=exif, quality=95)
    a = load_rgb(p)
    _assert_rgb(a, (40, 60))
    assert a[20, 5, 2] > 200 and a[20, 55, 0] > 200  # blue now on the left, red on the right


def test_reduced_size_decoding_and_box_mapping(tmp_path):
    p = tmp_path / "big.jpg"
    Image.fromarray(np.full((600, 800, 3), 128, np.uint8)).save(p)
    d = read_image(p, max_side=200)
    assert max(d.size) <= 200 and d.size == (200, 150)
    assert d.original_size == (800, 600)
    assert d.scale == pytest.approx((0.25, 0.25))
    box = np.array([80.0, 60.0, 400.0, 300.0])
    np.testing.assert_allclose(d.from_original(box), [20, 15, 100, 75])
    np.testing.assert_allclose(d.to_original(d.from_original(box)), box)
    small = read_image(p, max_side=1000)  # already small enough: full size
    assert small.size == (800, 600) and small.scale == (1.0, 1.0)
    png = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 90, 3), np.uint8)).save(png)
    assert read_image(png, max_side=100).size == (30, 100)
    with pytest.raises(ValueError):
        read_image(p, max_side=0)


def _jpeg_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("corrupt.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "corrupt|truncated|recognised"),
        ("truncated.jpg", None, "truncated"),
        ("empty.jpg", b"", "empty"),
        ("notes.jpg", b"this is a text file, not a picture\n", "not a recognised image format"),
        ("missing.jpg", "missing", "no such file"),
    ],
)
def test_undecodable_files_raise_image_error(tmp_path, name, content, reason):
    p = tmp_path / name
    if content is None:
        data = _jpeg_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif content != "missing":
        p.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as info:
        load_rgb(p)
    assert str(p) in str(info.value)
    assert info.value.path == str(p)
    assert isinstance(info.value, EmoctxError)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_rgb(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        image_size(tmp_path / "nope.png")


# The peak resident memory of this process (VmHWM; ru_maxrss would include the parent's peak before exec).
_PEAK_SCRIPT = """
import sys
from emoctx.data.images import read_image
def peak_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
start = peak_kib()
decoded = read_image(sys.argv[1], max_side=1280)
print(decoded.pixels.shape[0], decoded.pixels.shape[1], (peak_kib() - start) // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc (Linux)")
def test_a_huge_palette_png_is_shrunk_before_it_is_widened(tmp_path):
    """A 6000x6000 palette PNG with transparency (about 100 KB): decoded, its peak memory is the 36 MB of
    palette indices plus what --max-side allows, not RGBA copies at full size (720 MB before)."""
    import os
    import subprocess
    import sys

    from PIL import ImageDraw

    n = 6000
    img = Image.new("P", (n, n), 0)
    img.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    draw = ImageDraw.Draw(img)
    for k in range(1, 40):
        draw.ellipse((k * n // 60, k * n // 80, k * n // 45, k * n // 50), fill=k)
    path = tmp_path / "huge.png"
    img.save(path, transparency=0)
    del img, draw
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    h, w, peak_mib = (int(v) for v in out.stdout.split())
    assert (h, w) == (1280, 1280)
    assert peak_mib < 250, f"decoding took {peak_mib} MiB above the interpreter's start"


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "L", "I;16", "I"])
def test_shrinking_before_converting_gives_the_same_pixels(tmp_path, mode):
    """Reduced band by band, the result equals converting the whole image and resizing it (as before)."""
    from emoctx.data.images import _to_rgb

    rng = np.random.default_rng(0)
    if mode == "P":
        img = Image.fromarray(rng.integers(0, 255, (700, 1000), dtype=np.uint8), "L").convert("P")
        img.info["transparency"] = 3
    elif mode in ("I;16", "I"):
        values = rng.integers(0, 65535 if mode == "I;16" else 10**6, (700, 1000))
        img = Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.int32))
    else:
        channels = {"RGBA": 4, "LA": 2, "L": 1}[mode]
        a = rng.integers(0, 255, (700, 1000, channels), dtype=np.uint8)
        img = Image.fromarray(a[..., 0] if channels == 1 else a, mode)
    path = tmp_path / "x.png" if mode != "I" else tmp_path / "x.tif"
    img.save(path, **({"transparency": 3} if mode == "P" else {}))
    with Image.open(path) as whole:
        whole.load()
        target = (300, 210)
        expected = np.asarray(
            _to_rgb(whole, (255, 255, 255)).resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
        )
    got = read_image(path, max_side=300)
    assert got.size == target and got.original_size == (1000, 700)
    assert np.abs(got.pixels.astype(int) - expected.astype(int)).max() <= 1
