"""The one image reader (pipeline/core/image_files.py): decompression bombs refused from the header before any
pixel is decoded, truncated files unreadable, photos oriented by EXIF as Detectron2's ``read_image`` orients them
(``ImageOps.exif_transpose``), data PNGs unrotated, and 8-bit files read byte-identically to ``cv2.imread``."""

import re
import resource
import time
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_fixture import header_bomb, marked, png_bytes, png_chunk, save_oriented, truncated
from PIL import Image, ImageFile, ImageOps

from pipeline.core import image_files
from pipeline.core.errors import InputError
from pipeline.core.image_files import (ImageTooLargeError, UnreadableImageError, photo_size, read_data_image,
                                       read_image, read_photo)

ROOT = Path(__file__).resolve().parents[2]


def _fast_and_small(fn, *args) -> Exception | None:
    """The exception ``fn(*args)`` raises (None if none), checked to come within 1 s, 20 MB of new Python and
    numpy allocations and 100 MB more peak memory of the process (Pillow's own buffers)."""
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB
    tracemalloc.start()
    t0 = time.perf_counter()
    caught = None
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - returned to the test
        caught = e
    seconds, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 20e6, (seconds, peak)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_rss < 100_000
    return caught


@pytest.mark.parametrize("reader", [read_photo, read_data_image, photo_size, read_image])
def test_a_68_byte_png_declaring_60000_squared_is_refused_before_decoding(tmp_path, reader, monkeypatch):
    path = header_bomb(tmp_path / "bomb.png")
    assert len(path.read_bytes()) < 70

    def no_decoding(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    e = _fast_and_small(reader, path)
    assert isinstance(e, ImageTooLargeError) and isinstance(e, InputError)
    assert str(e).startswith(f"{path}: 60000 x 60000 pixels exceeds the 100-megapixel cap (a decompression bomb")
    assert "\n" not in str(e)


def test_zlib_bombs_are_refused_clearly(tmp_path):
    zeros = zlib.compress(b"\0" * (16 << 20), 9)  # 16 MB of zeros in 16 kB
    (tmp_path / "big.png").write_bytes(png_bytes(20000, 20000, zeros))  # header over the cap, a bomb for data
    e = _fast_and_small(read_photo, tmp_path / "big.png")
    assert isinstance(e, ImageTooLargeError) and "20000 x 20000 pixels exceeds" in str(e)
    # a small header with a compressed text chunk (or ICC profile) inflating to 16 MB
    for kind, key in ((b"zTXt", b"comment"), (b"iCCP", b"icc")):
        path = tmp_path / f"{kind.decode()}.png"
        path.write_bytes(png_bytes(8, 8, zlib.compress(b"\0" * 8 * 25), png_chunk(kind, key + b"\0\0" + zeros)))
        e = _fast_and_small(read_photo, path)
        assert isinstance(e, ImageTooLargeError) and re.match(rf"{re.escape(str(path))}: a compressed chunk inflates "
                                                              r"past Pillow's limit", str(e))
    # the same text chunk after the image data (read as the pixels are, or for the EXIF)
    after = png_bytes(8, 8, zlib.compress(b"\0" * 8 * 25))[:-12] + png_chunk(b"zTXt", b"c\0\0" + zeros)
    (tmp_path / "after.png").write_bytes(after + png_chunk(b"IEND", b""))
    for reader in (read_photo, photo_size):
        assert isinstance(_fast_and_small(reader, tmp_path / "after.png"), ImageTooLargeError)
    # a small header with 16 MB of image data: decoded only up to the header's pixels
    (tmp_path / "long.png").write_bytes(png_bytes(64, 64, zeros))
    tracemalloc.start()
    t0 = time.perf_counter()
    rgb = read_photo(tmp_path / "long.png")
    assert time.perf_counter() - t0 < 1.0 and tracemalloc.get_traced_memory()[1] < 20e6
    tracemalloc.stop()
    assert rgb.shape == (64, 64, 3) and not rgb.any()
    # a small header with a corrupt zlib stream: unreadable, named
    (tmp_path / "corrupt.png").write_bytes(png_bytes(64, 64, zeros[:2] + bytes(range(256)) * 40))
    with pytest.raises(UnreadableImageError, match=r"corrupt.png: corrupt image data"):
        read_photo(tmp_path / "corrupt.png")


def test_the_cap_refuses_one_pixel_over_and_accepts_it_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(image_files, "MAX_PIXELS", 110)
    cv2.imwrite(str(tmp_path / "over.png"), np.zeros((10, 12, 3), np.uint8))  # 120 pixels
    cv2.imwrite(str(tmp_path / "at.png"), np.zeros((10, 11, 3), np.uint8))  # 110 pixels
    with pytest.raises(ImageTooLargeError, match=r"over.png: 12 x 10 pixels exceeds the 0.00011-megapixel cap"):
        read_photo(tmp_path / "over.png")
    with pytest.raises(ImageTooLargeError):
        photo_size(tmp_path / "over.png")
    assert read_photo(tmp_path / "at.png").shape == (10, 11, 3) and photo_size(tmp_path / "at.png") == (10, 11)


def test_an_exif_orientation_6_jpeg_is_read_upright_as_detectron2_reads_it(tmp_path):
    path = tmp_path / "phone.jpg"
    save_oriented(path, marked(), 6)  # stored 60 wide, 40 high; shown turned 90 degrees clockwise
    rgb = read_photo(path)
    detectron2 = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))  # read_image(format="RGB")
    assert rgb.shape == (60, 40, 3) and np.array_equal(rgb, detectron2)
    assert photo_size(path) == (60, 40) and read_image(path).pixels.shape == (60, 40, 3)
    # the stored top-left block (rows 2..7, columns 4..11) is shown at the top right: rows 4..11, columns 32..37
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 90)
    rows, cols = np.nonzero(red)
    assert 3 <= rows.min() and rows.max() <= 12 and 31 <= cols.min() and cols.max() <= 38
    assert red[5:11, 33:37].all()
    # a data image is never rotated; OpenCV's IMREAD_COLOR (the detectron2 source's reader before) agrees
    assert read_data_image(path).shape == (40, 60, 3)
    assert np.array_equal(rgb, cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_every_orientation_is_exif_transpose_and_the_header_size_agrees(tmp_path, suffix):
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}{suffix}"
        save_oriented(path, marked(), orientation)
        rgb = read_photo(path)
        assert np.array_equal(rgb, np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))), orientation
        assert photo_size(path) == rgb.shape[:2] == ((60, 40) if orientation >= 5 else (40, 60)), orientation


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_file_is_unreadable_even_if_someone_let_pillow_load_it(tmp_path, suffix, monkeypatch, caplog):
    cut = truncated(tmp_path / f"cut{suffix}", np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8),
                    keep=2 / 3)
    for reader in (read_photo, read_data_image):
        with pytest.raises(UnreadableImageError, match=rf"cut{suffix}: truncated: the file ends before its last"):
            reader(cut)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what some Detectron2 forks do
    with pytest.raises(UnreadableImageError, match="truncated"):
        read_photo(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False and "LOAD_TRUNCATED_IMAGES" in caplog.text
    assert photo_size(cut) == (120, 160)  # the header is whole


def test_no_module_lets_pillow_load_truncated_images():
    for path in (ROOT / "pipeline").rglob("*.py"):
        assert not re.search(r"LOAD_TRUNCATED_IMAGES\s*=\s*True", path.read_text()), path


def test_unreadable_files_name_the_file_and_why(tmp_path):
    (tmp_path / "text.jpg").write_text("not a jpeg")
    cv2.imwrite(str(tmp_path / "float.tiff"), np.zeros((4, 5), np.float32))
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((4, 5, 3), np.uint16))
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "a.gif")
    for name, why in (("missing.png", "no such file"), ("text.jpg", "not an image file"),
                      ("a.gif", "not an image file"), ("float.tiff", "samples of Pillow mode 'F'")):
        with pytest.raises(UnreadableImageError, match=rf"{name}: {why}"):
            read_photo(tmp_path / name)
    assert read_photo(tmp_path / "deep.png").shape == (4, 5, 3)  # a photo: its high byte
    with pytest.raises(UnreadableImageError, match=r"deep.png: 16-bit colour samples"):
        read_data_image(tmp_path / "deep.png")  # data: 8 bits of it would be lost


def _images(tmp_path: Path) -> list[Path]:
    """8-bit files of every format and sample layout the image folders hold, and a 16-bit grey PNG."""
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 53)[:, None] * np.linspace(0, 1, 71)[None, :]
    smooth = (np.stack([x, x[::-1], x[:, ::-1]], axis=-1) * 255).astype(np.uint8)
    noisy = rng.integers(0, 256, (53, 71, 3), dtype=np.uint8)
    paths = []
    for name, img in (("smooth", smooth), ("noisy", noisy)):
        for suffix, flags in ((".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]), (".png", []), (".bmp", []), (".tif", []),
                              (".webp", [])):
            paths.append(tmp_path / f"{name}{suffix}")
            cv2.imwrite(str(paths[-1]), img, flags)
    cv2.imwrite(str(tmp_path / "grey.png"), noisy[..., 0])
    cv2.imwrite(str(tmp_path / "grey.jpg"), smooth[..., 0])
    cv2.imwrite(str(tmp_path / "bgra.png"), np.dstack([noisy, noisy[..., 1]]))
    Image.fromarray(smooth).save(tmp_path / "pil.jpg", quality=80, subsampling=0)
    Image.fromarray(smooth).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(noisy).convert("1").save(tmp_path / "bits.png")
    cv2.imwrite(str(tmp_path / "grey16.png"), noisy[..., 0].astype(np.uint16) * 257 + 3)
    return paths + [tmp_path / n for n in ("grey.png", "grey.jpg", "bgra.png", "pil.jpg", "palette.png", "bits.png",
                                           "grey16.png")]


def test_files_read_byte_identically_to_opencv(tmp_path):
    for path in _images(tmp_path):
        assert np.array_equal(read_photo(path)[..., ::-1], cv2.imread(str(path), cv2.IMREAD_COLOR)), path.name
        assert np.array_equal(read_data_image(path), cv2.imread(str(path), cv2.IMREAD_UNCHANGED)), path.name
