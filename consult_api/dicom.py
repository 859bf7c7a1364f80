"""DICOM as PACS send it: the header, the frames, and one frame at a time decoded on demand
from the file on disk (pydicom and its pixel-data plugins, numpy, OpenCV).

Memory stays bounded whatever the file's size: the header is read with
``stop_before_pixels`` (large values deferred, never loaded); a frame is read with
``pydicom.pixels.pixel_array(file, index=n)``, which seeks to a native frame's bytes or reads
only that frame's fragments of encapsulated (compressed) data. A deflated file compresses its
whole dataset, so no frame can be found in it without inflating it: it is inflated once, in
chunks, to a sidecar file with the same dataset in Explicit VR Little Endian.

Synchronous and CPU-bound: call from a worker thread. Errors carry a generic message and a
code: a DICOM header carries patient data, none of it goes into a message or log.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import cv2
import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom import uid as uids
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import get_expected_length, pixel_array

from consult_api.errors import InvalidRequest, NotFound, Unprocessable, UnsupportedType

# pydicom warns (and logs at WARNING) with the offending element's VALUE on malformed input,
# which may be a patient's name or id: keep such messages out of the logs.
logging.getLogger("pydicom").setLevel(logging.ERROR)

# Transfer syntaxes a PACS sends, with the short name materials show. Native ones carry
# pixel data as is; the others are compressed (deflate: the whole dataset).
NATIVE_SYNTAXES = {
    uids.ImplicitVRLittleEndian: "Implicit VR Little Endian",
    uids.ExplicitVRLittleEndian: "Explicit VR Little Endian",
    uids.ExplicitVRBigEndian: "Explicit VR Big Endian",
}
COMPRESSED_SYNTAXES = {
    uids.DeflatedExplicitVRLittleEndian: "Deflate",
    uids.JPEGBaseline8Bit: "JPEG Baseline",
    uids.JPEGExtended12Bit: "JPEG Extended",
    uids.JPEGLossless: "JPEG Lossless",
    uids.JPEGLosslessSV1: "JPEG Lossless SV1",
    uids.JPEGLSLossless: "JPEG-LS Lossless",
    uids.JPEGLSNearLossless: "JPEG-LS Near-lossless",
    uids.JPEG2000Lossless: "JPEG 2000 Lossless",
    uids.JPEG2000: "JPEG 2000",
    uids.HTJ2KLossless: "HTJ2K Lossless",
    uids.HTJ2KLosslessRPCL: "HTJ2K Lossless RPCL",
    uids.HTJ2K: "HTJ2K",
    uids.RLELossless: "RLE Lossless",
}
SYNTAX_NAMES = {**NATIVE_SYNTAXES, **COMPRESSED_SYNTAXES}

# The largest frame rendered (samples: rows x columns x samples per pixel), so that one
# request's memory stays bounded: 64 Mi samples is a 8192 x 8192 greyscale frame.
MAX_FRAME_SAMPLES = 64 * 1024 * 1024
# A deflated dataset may not inflate beyond this (a small upload must not fill the disk).
MAX_INFLATED = 4 * 1024 * 1024 * 1024
CHUNK = 1024 * 1024
DEFER_SIZE = 64 * 1024  # header values larger than this stay on disk
LIMIT = 1e7  # |center| and width the viewer may ask for

UID_PATTERN = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20}){0,31}", re.ASCII)
PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # pixel data, float, double float
UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
SHARED_GROUPS = 0x52009229  # (5200,9229) Shared Functional Groups Sequence


@dataclass(frozen=True)
class Window:
    """A VOI window in modality units (e.g. Hounsfield units for CT)."""

    center: float
    width: float


@dataclass(frozen=True)
class DicomInfo:
    modality: str | None
    study_date: str | None
    study_uid: str | None
    series_uid: str | None
    instance_uid: str | None
    rows: int | None
    columns: int | None
    patient_name: str | None  # never logged nor returned
    patient_id: str | None
    frames: int = 1
    transfer_syntax: str | None = None
    photometric: str | None = None
    window: Window | None = None  # None for colour images


@dataclass(frozen=True)
class Examined:
    """An upload's header and its first frame, rendered for the preview."""

    info: DicomInfo
    preview: NDArray[np.uint8]


def corrupt() -> Unprocessable:
    return Unprocessable("the DICOM file is corrupt or has no readable image",
                         code="dicom-corrupt")


def no_image() -> Unprocessable:
    return Unprocessable("the DICOM file has no image (no pixel data)", code="dicom-no-image")


def syntax_name(syntax: str) -> str:
    return SYNTAX_NAMES.get(uids.UID(syntax), syntax)


def is_compressed(syntax: str) -> bool:
    return syntax not in NATIVE_SYNTAXES


def needs_inflating(syntax: str) -> bool:
    return syntax == uids.DeflatedExplicitVRLittleEndian


def supported(syntax: str) -> bool:
    """Whether frames in this transfer syntax can be decoded here (a plugin is installed)."""
    if syntax not in SYNTAX_NAMES:
        return False
    if needs_inflating(syntax):
        return True
    try:
        return bool(get_decoder(uids.UID(syntax)).is_available)
    except NotImplementedError:
        return False


def transfer_syntax(path: Path) -> str:
    """The file's transfer syntax UID (from its file meta only); ``UnsupportedType`` (415)
    when no installed decoder handles it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = read_file_meta_info(path)
        syntax = str(meta.get("TransferSyntaxUID", "") or "").strip("\0 ")
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise corrupt() from exc
    if len(syntax) > 64 or not UID_PATTERN.fullmatch(syntax):
        raise corrupt()
    if not supported(syntax):
        raise UnsupportedType(
            f"DICOM transfer syntax {syntax} is not supported; accepted: "
            f"{', '.join(sorted(set(SYNTAX_NAMES.values())))}",
            code="dicom-unsupported-syntax")
    return syntax


def _meta_end(handle: BinaryIO) -> int:
    """The offset of the first element after the file meta group (always explicit VR LE)."""
    handle.seek(132)
    while True:
        start = handle.tell()
        head = handle.read(8)
        if len(head) < 8:
            raise corrupt()
        if int.from_bytes(head[:2], "little") != 2:
            return start
        if head[4:6] in _LONG_VRS:
            raw = handle.read(4)
            if len(raw) < 4:
                raise corrupt()
            length = int.from_bytes(raw, "little")
        else:
            length = int.from_bytes(head[6:8], "little")
        handle.seek(length, 1)


def inflate(path: Path, dest: Path, limit: int | None = None) -> None:
    """Write ``path`` (Deflated Explicit VR Little Endian) to ``dest`` as the same dataset in
    Explicit VR Little Endian, inflating in chunks: never more than a few MiB in memory, and
    at most ``limit`` (default ``MAX_INFLATED``) bytes of inflated data (else
    ``Unprocessable``, ``dest`` removed)."""
    limit = MAX_INFLATED if limit is None else limit
    try:
        meta = FileMetaDataset(read_file_meta_info(path))
        meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
        encoded = DicomBytesIO()
        encoded.is_little_endian, encoded.is_implicit_VR = True, False
        write_file_meta_info(encoded, meta, enforce_standard=True)
    except Exception as exc:
        raise corrupt() from exc
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        with path.open("rb") as source, dest.open("wb") as out:
            source.seek(_meta_end(source))
            out.write(bytes(128) + b"DICM" + encoded.getvalue())
            while chunk := source.read(CHUNK):
                data = inflater.decompress(chunk, CHUNK)
                while True:
                    total += len(data)
                    if total > limit:
                        raise Unprocessable(f"the DICOM data inflates beyond {limit} bytes",
                                            code="dicom-too-large")
                    out.write(data)
                    if not inflater.unconsumed_tail:
                        break
                    data = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            out.write(inflater.flush())
    except zlib.error as exc:
        dest.unlink(missing_ok=True)
        raise corrupt() from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


# --- the header --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    dataset: Dataset
    frames: int
    encapsulated: bool


def _positive(dataset: Dataset, keyword: str, default: int | None = None) -> int:
    value = dataset.get(keyword, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise corrupt() from None
    if number < 1:
        raise corrupt()
    return number


def read_header(path: Path) -> Header:
    """The dataset up to its pixel data (never read), the number of frames, and whether the
    pixel data is encapsulated. Checks that a native file holds every frame's bytes and that a
    frame is not larger than this server renders."""
    try:
        with path.open("rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(handle, stop_before_pixels=True, defer_size=DEFER_SIZE)
            start = handle.tell()
            element = handle.read(12)
            size = handle.seek(0, 2)
        syntax = uids.UID(str(dataset.file_meta.TransferSyntaxUID))
        little = syntax.is_little_endian
    except Exception as exc:
        raise corrupt() from exc
    if len(element) < 8:
        raise no_image()
    order: Literal["little", "big"] = "little" if little else "big"
    tag = (int.from_bytes(element[0:2], order) << 16) | int.from_bytes(element[2:4], order)
    if tag not in PIXEL_TAGS:
        raise no_image()
    if syntax.is_implicit_VR:
        length, value_at = int.from_bytes(element[4:8], order), start + 8
    else:
        length, value_at = int.from_bytes(element[8:12], order), start + 12
    rows, columns = _positive(dataset, "Rows"), _positive(dataset, "Columns")
    samples = _positive(dataset, "SamplesPerPixel", 1)
    frames = _positive(dataset, "NumberOfFrames", 1)
    if rows * columns * samples > MAX_FRAME_SAMPLES:
        raise Unprocessable(f"a DICOM frame may hold at most {MAX_FRAME_SAMPLES} samples",
                            code="dicom-frame-too-large")
    encapsulated = length == UNDEFINED_LENGTH
    if encapsulated != syntax.is_encapsulated and not needs_inflating(syntax):
        raise corrupt()
    if not encapsulated:
        try:
            expected = int(get_expected_length(dataset, unit="bytes"))
        except Exception as exc:
            raise corrupt() from exc
        if length < expected or value_at + expected > size:
            raise corrupt()
    return Header(dataset=dataset, frames=frames, encapsulated=encapsulated)


def _text(dataset: Dataset, keyword: str, limit: int) -> str | None:
    value = dataset.get(keyword)
    if value is None or str(value) == "":
        return None
    return str(value)[:limit]


def _first(value: Any) -> float | None:
    """The first number of a (possibly multi-valued) element, if it is a finite number."""
    if value is None:
        return None
    try:
        number = float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) else None


def _shared(dataset: Dataset, sequence: str, keyword: str) -> Any:
    """``keyword`` at the top level, else in the enhanced multi-frame shared functional
    groups (``sequence`` inside (5200,9229))."""
    value = dataset.get(keyword)
    if value is not None:
        return value
    try:
        return dataset.SharedFunctionalGroupsSequence[0][sequence][0].get(keyword)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def rescale(dataset: Dataset) -> tuple[float, float]:
    """(slope, intercept) from stored values to modality units."""
    slope = _first(_shared(dataset, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(_shared(dataset, "PixelValueTransformationSequence",
                               "RescaleIntercept"))
    return (slope if slope else 1.0), (intercept or 0.0)


def header_window(dataset: Dataset) -> Window | None:
    center = _first(_shared(dataset, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(_shared(dataset, "FrameVOILUTSequence", "WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return Window(center, width)


def computed_window(values: NDArray[Any]) -> Window:
    """The window spanning a frame's values (when the header gives none)."""
    low, high = float(values.min()), float(values.max())
    return Window(center=(low + high) / 2, width=max(high - low, 1.0))


# --- frames ------------------------------------------------------------------------------------

def _decode(path: Path, index: int) -> tuple[NDArray[Any], Dataset]:
    """Frame ``index`` and the image pixel module (group 0028, file meta, shared groups)."""
    module = Dataset()
    try:
        with path.open("rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = pixel_array(handle, index=index, ds_out=module,
                                 specific_tags=[SHARED_GROUPS])
    except Exception as exc:  # decoders raise many types on corrupt input
        raise corrupt() from exc
    return pixels, module


def is_colour(pixels: NDArray[Any], module: Dataset) -> bool:
    return pixels.ndim == 3 or module.get("PhotometricInterpretation") == "PALETTE COLOR"


def modality_values(pixels: NDArray[Any], module: Dataset) -> NDArray[np.float32]:
    slope, intercept = rescale(module)
    values = pixels.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept:
        values += np.float32(intercept)
    return values


def window(pixels: NDArray[Any], center: float | None = None,
           width: float | None = None) -> NDArray[np.uint8]:
    """Map pixel values to 8 bits: the given window, else the image's min..max."""
    values = np.array(pixels, dtype=np.float32)
    if center is None or width is None or width <= 0:
        low, high = float(values.min()), float(values.max())
    else:
        low, high = center - width / 2, center + width / 2
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    np.clip(values, low, high, out=values)
    values -= np.float32(low)
    values *= np.float32(255.0 / (high - low))
    np.rint(values, out=values)
    return values.astype(np.uint8)


def _colour(pixels: NDArray[Any], module: Dataset) -> NDArray[np.uint8]:
    """An RGB (or palette) frame as 8-bit BGR: windows do not apply to colour."""
    if module.get("PhotometricInterpretation") == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, module)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    if pixels.dtype != np.uint8:
        bits = 16 if module.get("PhotometricInterpretation") == "PALETTE COLOR" else int(
            module.get("BitsStored", 8) or 8)
        pixels = (np.clip(pixels, 0, None).astype(np.uint32) >> max(bits - 8, 0)).clip(0, 255)
    return np.asarray(cv2.cvtColor(pixels.astype(np.uint8), cv2.COLOR_RGB2BGR), np.uint8)


def display(pixels: NDArray[Any], module: Dataset, chosen: Window) -> NDArray[np.uint8]:
    """A greyscale frame windowed to 8 bits (inverted for MONOCHROME1)."""
    image = window(modality_values(pixels, module), chosen.center, chosen.width)
    if module.get("PhotometricInterpretation") == "MONOCHROME1":
        np.subtract(255, image, out=image)
    return image


def examine(path: Path) -> Examined:
    """Validate a DICOM file and render its first frame, without reading all its pixel data:
    the header, the first frame and (for multi-frame files) the last, which must be there."""
    header = read_header(path)
    dataset = header.dataset
    pixels, module = _decode(path, 0)
    if header.frames > 1:
        _decode(path, header.frames - 1)
    chosen: Window | None = None
    try:
        if is_colour(pixels, module):
            image = _colour(pixels, module)
        else:
            values = modality_values(pixels, module)
            chosen = header_window(dataset) or computed_window(values)
            image = display(pixels, module, chosen)
    except (ValueError, TypeError, AttributeError, KeyError, cv2.error) as exc:
        raise Unprocessable("the DICOM image could not be rendered",
                            code="dicom-corrupt") from exc
    info = DicomInfo(
        modality=_text(dataset, "Modality", 16), study_date=_text(dataset, "StudyDate", 8),
        study_uid=_text(dataset, "StudyInstanceUID", 64),
        series_uid=_text(dataset, "SeriesInstanceUID", 64),
        instance_uid=_text(dataset, "SOPInstanceUID", 64),
        rows=int(dataset.Rows), columns=int(dataset.Columns),
        patient_name=_text(dataset, "PatientName", 200),
        patient_id=_text(dataset, "PatientID", 100), frames=header.frames,
        transfer_syntax=str(dataset.file_meta.TransferSyntaxUID),
        photometric=_text(dataset, "PhotometricInterpretation", 16), window=chosen)
    return Examined(info=info, preview=image)


def pick_window(center: float | None, width: float | None, base: Window) -> Window:
    """The viewer's window: what it asked for, the rest from ``base``."""
    return Window(base.center if center is None else center,
                  base.width if width is None else width)


def render_frame(path: Path, index: int, center: float | None, width: float | None,
                 default: Window | None) -> bytes:
    """Frame ``index`` (0-based) of the DICOM file at ``path`` as PNG, windowed with
    ``center``/``width`` where given, else ``default`` (else the frame's own range)."""
    header = read_header(path)
    if index >= header.frames:
        raise NotFound(f"frame {index} does not exist: this image has {header.frames} "
                       f"frame{'s' if header.frames != 1 else ''}", code="frame-not-found")
    pixels, module = _decode(path, index)
    try:
        if is_colour(pixels, module):
            image = _colour(pixels, module)
        else:
            base = default or computed_window(modality_values(pixels, module))
            image = display(pixels, module, pick_window(center, width, base))
    except (ValueError, TypeError, AttributeError, KeyError, cv2.error) as exc:
        raise Unprocessable("the DICOM image could not be rendered",
                            code="dicom-corrupt") from exc
    return png(image)


def parse_frame_index(raw: str) -> int:
    """A frame number from the path: ASCII digits (400 otherwise)."""
    if not raw or not raw.isascii() or not raw.isdigit():
        raise InvalidRequest("the frame number must be a whole number from 0",
                             code="invalid-frame-number")
    if len(raw) > 9:
        raise NotFound("no such frame", code="frame-not-found")
    return int(raw)


def parse_level(raw: str | None, what: str) -> float | None:
    """A window ``center`` or ``width`` from the query (absent or empty: None)."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > LIMIT or (what == "width" and value <= 0):
        raise InvalidRequest(
            f"the window {what} must be a number"
            f"{' above 0' if what == 'width' else ''} within ±{LIMIT:.0e}",
            code="invalid-window")
    return value


def png(image: NDArray[np.uint8]) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise Unprocessable("the DICOM image could not be rendered", code="dicom-corrupt")
    return bytes(encoded.tobytes())


def write_png(image: NDArray[np.uint8], path: Path) -> None:
    path.write_bytes(png(image))
