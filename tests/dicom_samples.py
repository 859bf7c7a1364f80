"""Real DICOM files for the tests, generated here: CT-like images with known pixel values,
encoded the way PACS export them.

``jpeg_ct(path)`` writes the JPEG-compressed CT the browser test uploads: 512 x 512,
MONOCHROME2, 12 bits stored in 16, JPEG Lossless SV1 (1.2.840.10008.1.2.4.70, the JPEG
syntax PACS use for CT), encoded by ``jpeg_lossless`` below (the JPEG lossless process is
simple enough to write out; the installed plugins only decode it). Other encoders: OpenCV
for JPEG baseline (8-bit), pydicom with its plugins for RLE and JPEG 2000, pydicom for deflate.
JPEG-LS has no encoder here: its tests use pydicom's bundled JPEG-LS files.

Every pixel value is a known function (``ct_values``), so a test can check the decoded
frame, not just a 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    generate_uid,
)

PATIENT_NAME = "Li^Xiaoming"
PATIENT_ID = "PID-20260302-0042"
INTERCEPT = -1024.0
CENTER, WIDTH = 40.0, 400.0  # soft-tissue window in the header


def ct_values(rows: int = 512, columns: int = 512, frame: int = 0) -> NDArray[np.uint16]:
    """Stored values (12 bits) of frame ``frame``: a diagonal gradient over the whole range,
    shifted by 64 per frame, so that every frame differs."""
    y, x = np.mgrid[0:rows, 0:columns]
    return np.asarray((8 * x + 2 * y + 64 * frame) & 0xFFF, dtype=np.uint16)


def expected_png(stored: NDArray[Any], center: float = CENTER, width: float = WIDTH,
                 intercept: float = INTERCEPT) -> NDArray[np.int64]:
    """What a windowed 8-bit rendering of ``stored`` must show (the linear window)."""
    hu = stored.astype(np.float64) + intercept
    low = center - width / 2
    return np.rint(np.clip((hu - low) / width, 0, 1) * 255).astype(np.int64)


# --- JPEG lossless (ITU T.81 process 14), one component -----------------------------------------

def _marker(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _predict(image: NDArray[np.int64], predictor: int, precision: int) -> NDArray[np.int64]:
    """The prediction of every sample (T.81 H.1.2.1): first row from the left, first column
    from above, the first sample 2^(P-1), the rest by the selection value."""
    a = np.zeros_like(image)
    b = np.zeros_like(image)
    c = np.zeros_like(image)
    a[:, 1:], b[1:, :], c[1:, 1:] = image[:, :-1], image[:-1, :], image[:-1, :-1]
    formulas = {1: a, 2: b, 3: c, 4: a + b - c, 5: a + ((b - c) >> 1),
                6: b + ((a - c) >> 1), 7: (a + b) >> 1}
    predicted = formulas[predictor].copy()
    predicted[0, 1:] = image[0, :-1]
    predicted[1:, 0] = image[:-1, 0]
    predicted[0, 0] = 1 << (precision - 1)
    return predicted


def jpeg_lossless(image: NDArray[Any], precision: int = 16, predictor: int = 1) -> bytes:
    """A JPEG lossless codestream of a greyscale ``image`` (unsigned, ``precision`` bits).

    The Huffman table gives every difference category (0..16) a 5-bit code: valid, if not
    optimal; the bits are packed with numpy, so a 512 x 512 image takes milliseconds."""
    rows, columns = image.shape
    samples = image.astype(np.int64)
    difference = (samples - _predict(samples, predictor, precision)) & 0xFFFF
    difference = np.where(difference >= 0x8000, difference - 0x10000, difference).ravel()
    magnitude = np.abs(difference)
    category = np.zeros_like(magnitude)
    nonzero = magnitude > 0
    category[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    extra = np.where(difference >= 0, difference, difference + (1 << category) - 1)
    extra = np.where(category == 16, 0, extra)  # category 16: no extra bits
    extra_bits = np.where(category == 16, 0, category)
    code = (category << extra_bits) | (extra & ((1 << extra_bits) - 1))
    length = 5 + extra_bits
    positions = np.arange(21)
    bits = (code[:, None] >> (length[:, None] - 1 - positions)) & 1
    stream = bits[positions < length[:, None]].astype(np.uint8)
    stream = np.concatenate([stream, np.ones(-len(stream) % 8, np.uint8)])  # pad with 1s
    packed = np.packbits(stream)
    stuffed = np.insert(packed, np.flatnonzero(packed == 0xFF) + 1, 0)  # FF -> FF 00
    frame = bytes([precision]) + rows.to_bytes(2, "big") + columns.to_bytes(2, "big")
    table = bytes([0x00]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    return (b"\xff\xd8" + _marker(0xC3, frame + b"\x01\x01\x11\x00")
            + _marker(0xC4, table)
            + _marker(0xDA, bytes([1, 1, 0x00, predictor, 0, 0]))
            + stuffed.tobytes() + b"\xff\xd9")


# --- datasets ------------------------------------------------------------------------------------

def ct_dataset(rows: int = 512, columns: int = 512, frames: int = 1,
               syntax: UID = ExplicitVRLittleEndian, bits_stored: int = 12,
               photometric: str = "MONOCHROME2", window: bool = True) -> Dataset:
    """A CT image's header (no pixel data yet), with a made-up patient."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.StudyDate = "CT", "20260302"
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = INTERCEPT, 1.0
    if window:
        ds.WindowCenter, ds.WindowWidth = CENTER, WIDTH
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def encapsulated(ds: Dataset, frames: list[bytes], path: Path) -> Path:
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return save(ds, path)


def jpeg_ct(path: Path, frames: int = 1, syntax: UID = JPEGLosslessSV1) -> Path:
    """The JPEG-compressed CT a PACS exports: 512 x 512, MONOCHROME2, 12 bits in 16,
    JPEG Lossless SV1 (or, with ``syntax=JPEGLossless``, process 14 with predictor 6);
    frame ``k`` holds ``ct_values(frame=k)``."""
    predictor = 1 if syntax == JPEGLosslessSV1 else 6
    ds = ct_dataset(frames=frames, syntax=syntax)
    return encapsulated(ds, [jpeg_lossless(ct_values(frame=k), 12, predictor)
                             for k in range(frames)], path)


def jpeg_baseline_ct(path: Path) -> tuple[Path, NDArray[np.uint8]]:
    """An 8-bit CT-like image, JPEG baseline (lossy, OpenCV at quality 95); returns the
    original pixels (the decoded ones differ by a few levels)."""
    pixels = (ct_values(256, 256) >> 4).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ds = ct_dataset(256, 256, syntax=JPEGBaseline8Bit, bits_stored=8, window=False)
    ds.BitsAllocated = 8
    ds.RescaleIntercept = 0.0
    return encapsulated(ds, [encoded.tobytes()], path), pixels


def native_ct(path: Path, frames: int = 1, rows: int = 512, columns: int = 512,
              **options: Any) -> Path:
    """An uncompressed multi-frame CT, written frame by frame (never whole in memory)."""
    ds = ct_dataset(rows, columns, frames, **options)
    ds.PixelData = b""  # placeholder: the header is written, then the frames appended
    frame_bytes = rows * columns * 2
    save(ds, path)
    raw = path.read_bytes()
    marker = b"\xe0\x7f\x10\x00OW\x00\x00\x00\x00\x00\x00"
    assert raw.endswith(marker)
    with path.open("r+b") as handle:
        handle.seek(len(raw) - 4)
        handle.write((frames * frame_bytes).to_bytes(4, "little"))
        for chunk in frame_chunks(frames, rows, columns):
            handle.write(chunk)
    return path


def frame_chunks(frames: int, rows: int, columns: int) -> Iterator[bytes]:
    for k in range(frames):
        yield ct_values(rows, columns, k).astype("<u2").tobytes()
