"""The one table of media file suffixes (lower case, with the dot), and what a file's first
bytes say it is.

Every part of the project that decides "is this file an image / a video?" reads these, so a
folder scan, a CSV listing and the analyst pipeline agree on what they accept.
:func:`sniff_media` decides from the content alone (the container's signature), for files whose
name cannot be trusted (uploads to ``mrigan serve``); the decoder still has the last word.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg",
                                   ".mpeg", ".wmv", ".flv")
MEDIA_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES + VIDEO_SUFFIXES


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


#: How many leading bytes :func:`sniff_media` reads.
SNIFF_BYTES = 64


def sniff_media(head: bytes) -> tuple[str, str] | None:
    """``(kind, suffix)`` of a file from its first :data:`SNIFF_BYTES` bytes - kind "image" or
    "video", suffix one of :data:`MEDIA_SUFFIXES` - or ``None`` when no known image or video
    container starts that way. Only the signature is read: a file can start right and still
    fail to decode."""
    riff = head[:4] == b"RIFF" and len(head) >= 12
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", ".jpg"
    if riff and head[8:12] == b"WEBP":
        return "image", ".webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", ".tif"
    if head[:2] == b"BM" and len(head) >= 26 and head[6:10] == b"\x00\x00\x00\x00":
        return "image", ".bmp"  # 'BM', file size, two reserved zero words
    if head[4:8] == b"ftyp":  # ISO base media: MP4, MOV, M4V, 3GP
        return "video", ".mov" if head[8:12] == b"qt  " else ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        return "video", ".webm" if b"webm" in head else ".mkv"
    if riff and head[8:12] == b"AVI ":
        return "video", ".avi"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video", ".mpg"  # MPEG program stream / elementary video stream
    if head.startswith(b"FLV\x01"):
        return "video", ".flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):  # ASF header GUID
        return "video", ".wmv"
    return None


def sniff_file(path: str | os.PathLike) -> tuple[str, str] | None:
    """:func:`sniff_media` of a file's first bytes."""
    with open(path, "rb") as fh:
        return sniff_media(fh.read(SNIFF_BYTES))


__all__ = ["IMAGE_SUFFIXES", "MEDIA_SUFFIXES", "SNIFF_BYTES", "VIDEO_SUFFIXES", "is_image",
           "is_video", "sniff_file", "sniff_media"]
