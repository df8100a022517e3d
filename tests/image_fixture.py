"""Image files the reader must refuse or orient (pipeline/core/image_files.py): PNGs written by hand (any
header, any data: decompression bombs), truncated files, and photos with an EXIF orientation tag."""

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(w: int, h: int, idat: bytes, before_idat: bytes = b"") -> bytes:
    """An 8-bit RGB PNG written by hand: its header says ``w`` x ``h``, its image data is ``idat`` (zlib)."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + before_idat + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def header_bomb(path: Path) -> Path:
    """A 68-byte PNG declaring 60000 x 60000 pixels (10.8 GB decoded)."""
    path.write_bytes(png_bytes(60000, 60000, zlib.compress(b"\0" * 10)))
    return path


def truncated(path: Path, image: np.ndarray, keep: float = 0.5) -> Path:
    """``image`` (BGR, as cv2.imwrite takes it) written to ``path`` (its suffix the format), then cut to ``keep``
    of its bytes: a download or copy that stopped."""
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(data.tobytes()[:int(len(data) * keep)])
    return path


def save_oriented(path: Path, rgb: np.ndarray, orientation: int) -> Path:
    """``rgb`` (H, W, 3) uint8 saved as stored pixels, with EXIF orientation ``orientation`` (6: a phone held
    upright, its photo shown turned 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif)
    return path


def marked(h: int = 40, w: int = 60) -> np.ndarray:
    """(h, w, 3) uint8 RGB: a smooth gradient with a red block at rows 2..7, columns 4..11 (a corner to find after
    a rotation)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([60 + x, 60 + y, 120 + 0 * x], axis=-1).astype(np.uint8)
    img[2:8, 4:12] = (250, 20, 20)
    return img
