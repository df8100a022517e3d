"""Image files: the one reader of every photo and every IUV / INDS PNG the densepose sources read.

Every read goes the same way, whatever the source (``detectron2``, ``network``, ``precomputed``):

1. **Header first.** Pillow's ``Image.open`` reads the header only; an image of more than :data:`MAX_PIXELS`
   pixels is refused with :class:`ImageTooLargeError` before a pixel is decoded (a 69-byte PNG may declare
   60000 x 60000 pixels, 10.8 GB decoded), and so is a PNG whose compressed text or ICC chunk inflates past
   Pillow's 1 MB limit. Only the formats of the image folders are opened (:data:`FORMATS`).
2. **Decoded whole or not at all.** A file that ends before its last pixel (a cut JPEG or PNG) is unreadable,
   never completed with grey: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` stays False (reset, with a warning, if
   another module set it). Image data holding more than the header's pixels is decoded only up to them; corrupt
   data is unreadable.
3. **Photos are oriented as Detectron2 orients them** (``detectron2.data.detection_utils.read_image``:
   ``_apply_exif_orientation``, the transposes of ``PIL.ImageOps.exif_transpose`` for EXIF orientations 2..8;
   an unreadable EXIF block leaves the image as stored). A phone photo stored sideways is read upright by every
   source, and its (H, W), boxes and crops are those of the upright image everywhere (:func:`photo_size`,
   :func:`read_image`, :func:`read_photo`). IUV and INDS PNGs are data addressed by boxes: read unrotated
   (:func:`read_data_image`), with the same checks.

Errors, both :class:`~pipeline.core.errors.InputError` (one line naming the file, no traceback when they end a
stage): :class:`ImageTooLargeError` (a decompression bomb: the sources stop on it) and
:class:`UnreadableImageError` (missing, not one of :data:`FORMATS`, corrupt, truncated, samples of another type:
every source skips and counts such an image, ``images_skipped``, as it did every unreadable file before).

Samples. 8-bit JPEG, PNG, BMP, TIFF and WebP files read byte-identically to ``cv2.imread`` (the sources' reader
before; the same libjpeg-turbo decoding), EXIF-oriented ones too for ``cv2.IMREAD_COLOR`` (JPEG, PNG, WebP), CMYK
JPEGs within one level. 16-bit grey is kept as uint16 by :func:`read_image`; Pillow reads 16-bit colour as its
high byte, so 16-bit samples become 8-bit by their high byte everywhere (``v >> 8``, as ``cv2.IMREAD_COLOR``
did). Palette images become RGB (RGBA with a transparent colour), 1-bit images 0/255 grey.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["MAX_PIXELS", "FORMATS", "ImageTooLargeError", "UnreadableImageError", "Decoded", "photo_size",
           "read_image", "read_photo", "read_data_image"]

MAX_PIXELS = 100_000_000
"""The most pixels (width x height, from the header) an image file may have: 100 megapixels.

DensePose photos are at most a few thousand pixels a side (a 12-megapixel phone photo is 4000 x 3000, a
50-megapixel one 8160 x 6120) and Detectron2 resizes them to a short side of about 800 pixels anyway; 100
megapixels is 300 MB decoded (RGB), about 1 GB at the peak of a read, which any machine running DensePose
holds. Larger files are decompression bombs or not photos for DensePose: downscale them. (Pillow's own
guard warns from 89.5 and refuses from 179 megapixels, without the size in its message.)"""

FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")
"""Pillow formats opened (those of ``pipeline.densepose.detectron2.IMAGE_SUFFIXES``; JPEG includes a phone's MPO);
any other is unreadable."""

_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}  # EXIF orientation -> Pillow transpose (Detectron2's table)
_EXIF_ORIENTATION = 0x0112
# what Pillow raises on a file it cannot read (a bug of ours raises something else, with its traceback)
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError, KeyError,
                TypeError)
_PIL_LIMIT = threading.Lock()  # guards the moment Pillow's own pixel limit is lifted (_opened)


class ImageTooLargeError(InputError):
    """A decompression bomb, refused before it is decoded: an image file whose header declares more than
    :data:`MAX_PIXELS` pixels, or whose compressed chunk (a PNG's text or ICC profile) inflates past Pillow's limit.
    The sources stop on it (it is not skipped: such a file is not a photo someone meant to use)."""


class UnreadableImageError(InputError):
    """An image file that is missing, not an image of :data:`FORMATS`, corrupt, truncated or of another sample
    type; the sources skip and count it."""


@dataclass(frozen=True)
class Decoded:
    """An image file's pixels as decoded.

    pixels: (H, W) grey, (H, W, 2) grey and alpha, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, or uint16 for
        16-bit grey.
    bits: the file's bits per sample, 8 or 16 (16-bit colour is in ``pixels`` as 8-bit: its high byte).
    """

    pixels: np.ndarray
    bits: int


def _megapixels(n: int) -> str:
    return f"{n / 1e6:g}-megapixel"


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator:
    """The Pillow image of ``path`` with its header read and its size within :data:`MAX_PIXELS` (nothing decoded).

    Pillow's own limit is lifted while it reads the header (under a lock), so that the refusal names the size.
    Raises:
        ImageTooLargeError: more than :data:`MAX_PIXELS` pixels.  UnreadableImageError: anything else unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    with _PIL_LIMIT:
        kept, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path, formats=FORMATS)
        except FileNotFoundError as e:
            raise UnreadableImageError(f"{path}: no such file") from e
        except UnidentifiedImageError as e:
            raise UnreadableImageError(f"{path}: not an image file ({', '.join(FORMATS)}) or a corrupt header") from e
        except (Image.DecompressionBombError, *_READ_ERRORS) as e:
            raise _refusal(path, e, "unreadable image header") from e
        finally:
            Image.MAX_IMAGE_PIXELS = kept
    with im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ImageTooLargeError(
                f"{path}: {w} x {h} pixels exceeds the {_megapixels(MAX_PIXELS)} cap (a decompression bomb or not "
                f"an image for DensePose); downscale it below {MAX_PIXELS / 1e6:g} megapixels or remove it")
        if w * h == 0:
            raise UnreadableImageError(f"{path}: an empty image ({w} x {h} pixels)")
        yield im


def _refusal(path: str | Path, e: Exception, what: str) -> InputError:
    """The error for Pillow's exception ``e`` on ``path``: a decompression bomb (a compressed chunk inflating past
    Pillow's limit), a truncated file, or else ``what`` the file is (unreadable)."""
    from PIL import Image

    if isinstance(e, Image.DecompressionBombError) or (isinstance(e, ValueError) and "Decompressed" in str(e)):
        return ImageTooLargeError(f"{path}: a compressed chunk inflates past Pillow's limit ({e}): a decompression "
                                  "bomb or not an image for DensePose; remove it")
    if isinstance(e, (OSError, EOFError)) and "truncated" in str(e).lower():
        return UnreadableImageError(f"{path}: truncated: the file ends before its last pixel (a cut download or "
                                    "copy); copy it again")
    return UnreadableImageError(f"{path}: {what} ({type(e).__name__}: {e})")


def _orientation(im, path: str | Path) -> int:
    """The EXIF orientation Detectron2 applies (2..8), or 1: none, another value, or an unreadable EXIF block.
    Raises ImageTooLargeError when reading the block meets a decompression bomb."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION)
        return value if value in _TRANSPOSE else 1
    except _READ_ERRORS as e:  # Detectron2 leaves the image as stored (its issue 1885)
        refusal = _refusal(path, e, "")
        if isinstance(refusal, ImageTooLargeError):
            raise refusal from e
        return 1


def photo_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of a photo as :func:`read_photo` reads it (after its EXIF orientation), from its header (Pillow
    decodes a PNG to find an EXIF block after its pixels, as Detectron2 does).

    Raises:
        ImageTooLargeError, UnreadableImageError: as :func:`read_image` (a truncated file is not found out here).
    """
    with _opened(path) as im:
        w, h = im.size
        if im.format == "TIFF":  # Pillow orients a TIFF itself as it decodes it: its size is the oriented one
            return h, w
        return (w, h) if _orientation(im, path) >= 5 else (h, w)  # 5..8 swap the sides


def _decode(im, path: str | Path) -> None:
    """Decodes ``im`` whole (Pillow's ``load``). Raises UnreadableImageError on a truncated or corrupt file."""
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set to True (by another module): reset to False, a "
                    "truncated image is unreadable, never completed with grey")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        im.load()
    except (Image.DecompressionBombError, *_READ_ERRORS) as e:
        raise _refusal(path, e, "corrupt image data") from e


def _bits(im) -> int:
    """The bits per sample of an opened (not yet decoded) image: 16 when Pillow decodes it from 16-bit samples."""
    return 16 if im.mode.startswith("I;16") or any(";16" in str(tile[3]) for tile in im.tile) else 8


def _known_mode(im, path: str | Path):
    """A decoded image in one of the modes L, LA, RGB, RGBA, I;16* (converted when in another 8-bit mode)."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA") or mode.startswith("I;16"):
        return im
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("1", "La", "PA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert({"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA"}.get(mode, "RGB"))
    raise UnreadableImageError(f"{path}: samples of Pillow mode {mode!r}, not an 8- or 16-bit grey or colour image")


def read_image(path: str | Path, orient: bool = True) -> Decoded:
    """An image file's pixels (:class:`Decoded`; channels in RGB(A) order), oriented by its EXIF tag as Detectron2
    orients photos unless ``orient`` is False (data images).

    Raises:
        ImageTooLargeError: more than :data:`MAX_PIXELS` pixels, before decoding.
        UnreadableImageError: missing, not one of :data:`FORMATS`, corrupt, truncated, or of another sample type.
    """
    from PIL import Image

    with _opened(path) as im:
        bits = _bits(im)
        _decode(im, path)
        turn = _orientation(im, path) if orient else 1  # read once decoded: a PNG's EXIF may follow its pixels
        out = _known_mode(im, path)
        if turn != 1:
            out = out.transpose(getattr(Image.Transpose, _TRANSPOSE[turn]))
        pixels = np.asarray(out)
    pixels = pixels if pixels.dtype == np.uint8 else pixels.astype(np.uint16)  # I;16B is big-endian
    return Decoded(np.ascontiguousarray(pixels), bits)


def _to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 samples by their high byte (``v >> 8``) as uint8; uint8 as they are."""
    return (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels


def read_photo(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a photo as Detectron2's ``read_image(path, format="RGB")`` reads it (EXIF-oriented;
    grey repeated in three channels, alpha dropped, 16-bit samples by their high byte). Reverse the channels for
    OpenCV's BGR.

    Raises:
        ImageTooLargeError, UnreadableImageError: as :func:`read_image`.
    """
    px = _to_8bit(read_image(path).pixels)
    if px.ndim == 2 or px.shape[2] == 2:
        grey = px if px.ndim == 2 else px[..., 0]
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    return np.ascontiguousarray(px[..., :3])


def read_data_image(path: str | Path) -> np.ndarray:
    """A data image (an IUV or INDS PNG) unrotated, as ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` returns it:
    (H, W) grey, (H, W, 2) grey and alpha, or (H, W, C) with colour in OpenCV's BGR(A) order (channel 0 the
    PNG's blue); uint8, or uint16 for 16-bit grey. (Pillow orients a TIFF as it decodes it: data images are PNGs.)

    Raises:
        ImageTooLargeError: as :func:`read_image`.
        UnreadableImageError: as :func:`read_image`, and 16-bit colour (Pillow keeps 8 bits of it: data would be lost).
    """
    d = read_image(path, orient=False)
    px = d.pixels
    if px.ndim == 3 and d.bits == 16:
        raise UnreadableImageError(f"{path}: 16-bit colour samples, read only to 8 bits: save it with 8-bit samples "
                                   "(or 16-bit grey)")
    if px.ndim == 3 and px.shape[2] >= 3:
        px = px[..., [2, 1, 0, 3][:px.shape[2]]]  # RGB(A) -> OpenCV's BGR(A)
    return np.ascontiguousarray(px)
