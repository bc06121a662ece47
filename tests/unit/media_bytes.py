"""Small bodies with the real shape of each download variant (the content checks read them)."""

from __future__ import annotations


def box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def mp4(payload: int = 1000, fill: bytes = b"\x00") -> bytes:
    """ftyp, moov and an mdat of ``payload`` bytes: a whole MP4 as far as the box walk can tell."""
    return (
        box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
        + box(b"moov", b"\x00" * 100)
        + box(b"mdat", (fill * payload)[:payload])
    )


def webp(payload: int = 100) -> bytes:
    return b"RIFF" + (4 + payload).to_bytes(4, "little") + b"WEBP" + b"\x00" * payload


def jpeg(payload: int = 100) -> bytes:
    return b"\xff\xd8\xff\xe0" + b"\x00" * payload + b"\xff\xd9"


def png(payload: int = 100) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00" * payload
