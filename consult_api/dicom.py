"""DICOM validation, metadata and preview rendering (pydicom, numpy, OpenCV).

Synchronous and CPU-bound: call from a worker thread. Errors are ``Unprocessable`` with a
generic message: a DICOM header carries patient data, none of it goes into a message or log.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import FileDataset

from consult_api.errors import Unprocessable

# pydicom warns (and logs at WARNING) with the offending element's VALUE on malformed input,
# which may be a patient's name or id: keep such messages out of the logs.
logging.getLogger("pydicom").setLevel(logging.ERROR)


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


def _text(dataset: FileDataset, keyword: str, limit: int) -> str | None:
    value = dataset.get(keyword)
    if value is None or str(value) == "":
        return None
    return str(value)[:limit]


def _int(dataset: FileDataset, keyword: str) -> int | None:
    value = dataset.get(keyword)
    return None if value is None else int(value)


def read(path: Path) -> FileDataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path)
            dataset.pixel_array  # noqa: B018 - decodes the pixel data: validates it
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise Unprocessable("the DICOM file is corrupt or has no readable image") from exc
    return dataset


def info(dataset: FileDataset) -> DicomInfo:
    return DicomInfo(
        modality=_text(dataset, "Modality", 16), study_date=_text(dataset, "StudyDate", 8),
        study_uid=_text(dataset, "StudyInstanceUID", 64),
        series_uid=_text(dataset, "SeriesInstanceUID", 64),
        instance_uid=_text(dataset, "SOPInstanceUID", 64),
        rows=_int(dataset, "Rows"), columns=_int(dataset, "Columns"),
        patient_name=_text(dataset, "PatientName", 200),
        patient_id=_text(dataset, "PatientID", 100))


def window(pixels: NDArray[Any], center: float | None = None,
           width: float | None = None) -> NDArray[np.uint8]:
    """Map pixel values to 8 bits: the given window, else the image's min..max."""
    values = pixels.astype(np.float64)
    if center is None or width is None or width <= 0:
        low, high = float(values.min()), float(values.max())
    else:
        low, high = center - width / 2, center + width / 2
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, low, high) - low) / (high - low) * 255.0
    return np.rint(scaled).astype(np.uint8)


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)
    except (TypeError, ValueError, IndexError):
        return None


def preview(dataset: FileDataset) -> NDArray[np.uint8]:
    """An 8-bit greyscale (or BGR) image of the first frame, rescaled and windowed."""
    try:
        return _render(dataset)
    except (ValueError, TypeError, cv2.error) as exc:
        raise Unprocessable("the DICOM image could not be rendered") from exc


def _render(dataset: FileDataset) -> NDArray[np.uint8]:
    pixels: NDArray[Any] = dataset.pixel_array
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if pixels.ndim == 3:  # colour: already 8 bit per sample in practice
        return cv2.cvtColor(window(pixels), cv2.COLOR_RGB2BGR).astype(np.uint8)
    slope = _first(dataset.get("RescaleSlope")) or 1.0
    intercept = _first(dataset.get("RescaleIntercept")) or 0.0
    image = window(pixels * slope + intercept, _first(dataset.get("WindowCenter")),
                   _first(dataset.get("WindowWidth")))
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        image = 255 - image
    return image


def write_png(image: NDArray[np.uint8], path: Path) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise Unprocessable("the DICOM image could not be rendered")
    path.write_bytes(encoded.tobytes())
