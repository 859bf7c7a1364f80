"""Which kind of file an upload is, from its first bytes (magic numbers), never its name.

Pure: ``sniff(head)`` looks at up to ``HEAD_BYTES`` leading bytes.
"""

from __future__ import annotations

HEAD_BYTES = 132

DICOM_PREAMBLE = 128
DICOM_MAGIC = b"DICM"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF-"

MEDIA_TYPES = {"dicom": "application/dicom", "jpeg": "image/jpeg", "png": "image/png",
               "pdf": "application/pdf"}


def sniff(head: bytes) -> str | None:
    """The kind ("dicom", "jpeg", "png", "pdf") of a file starting with ``head``, or None."""
    if head[DICOM_PREAMBLE:DICOM_PREAMBLE + len(DICOM_MAGIC)] == DICOM_MAGIC:
        return "dicom"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(PDF_MAGIC):
        return "pdf"
    return None
