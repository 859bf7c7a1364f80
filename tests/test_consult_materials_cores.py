"""The pure cores behind materials: type sniffing and DICOM windowing."""

from __future__ import annotations

import numpy as np
import pytest

from consult_api.dicom import window
from consult_api.filetype import sniff


@pytest.mark.parametrize(("head", "kind"), [
    (bytes(128) + b"DICM\x02\x00", "dicom"), (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "png"), (b"%PDF-1.7\n", "pdf"),
    (b"MZ\x90\x00", None), (b"DICM" + bytes(128), None), (b"", None), (b"%PDF", None),
    (bytes(127) + b"DICM", None)])
def test_sniff_reads_magic_numbers(head: bytes, kind: str | None) -> None:
    assert sniff(head) == kind


def test_window_maps_to_8_bits() -> None:
    pixels = np.array([[-1000, 0], [40, 3000]], dtype=np.int16)
    assert window(pixels).tolist() == [[0, 64], [66, 255]]
    assert window(pixels, center=40, width=400).tolist() == [[0, 102], [128, 255]]
    assert window(np.full((2, 2), 7)).tolist() == [[0, 0], [0, 0]]
