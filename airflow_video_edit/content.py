"""What a download really is: its type from its first bytes, and, for an MP4, whether it is whole.

Checked while the bytes stream past (never a second read of the file):

- the *magic* of the first bytes decides the type (MP4 ``ftyp``, WebP, JPEG, PNG); Content-Type
  is only reported, since gateways send ``application/octet-stream`` or the wrong one. A type that
  does not fit the variant asked for (the MP4 for a thumbnail: a gateway that ignores
  ``?variant=``) fails at once with :class:`~airflow_video_edit.errors.ContentMismatchError`;
- an MP4's top-level boxes are walked: they must end exactly at the end of the body and include
  ``moov``, else the body was cut (even behind a matching Content-Length) and the download is
  an incomplete transfer (:class:`~airflow_video_edit.errors.TransportError`, retried).
"""

from __future__ import annotations

from airflow_video_edit.errors import ContentMismatchError, TransportError

ALLOWED = {"video": ("mp4",), "thumbnail": ("webp", "jpeg", "png"), "spritesheet": ("webp", "jpeg", "png")}
SUFFIXES = {"mp4": ".mp4", "webp": ".webp", "jpeg": ".jpg", "png": ".png"}
_HEAD = 12


def sniff(head: bytes) -> str | None:
    """The type the first bytes of a file show, or None."""
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


class Mp4Boxes:
    """A streaming walk of an MP4's top-level boxes (size, type), fed chunk by chunk."""

    def __init__(self) -> None:
        self.offset = 0  # bytes seen
        self.next = 0  # where the next box starts
        self.header = bytearray()  # the next box's header, as far as it has arrived
        self.types: list[bytes] = []
        self.to_end = False  # a box of size 0 runs to the end of the file
        self.bad: str | None = None

    def feed(self, chunk: bytes) -> None:
        start = self.offset
        self.offset += len(chunk)
        while not self.to_end and self.bad is None:
            position = self.next + len(self.header)  # the next header byte needed
            if position >= self.offset:
                return
            wanted = (16 if len(self.header) >= 8 and self._size32() == 1 else 8) - len(self.header)
            taken = chunk[position - start : position - start + wanted]
            if not taken:
                return
            self.header += taken
            if len(self.header) < 8:
                continue
            size, header_length = self._size32(), 8
            if size == 1:
                if len(self.header) < 16:
                    continue
                size, header_length = int.from_bytes(self.header[8:16], "big"), 16
            self.types.append(bytes(self.header[4:8]))
            if size == 0:
                self.to_end = True
            elif size < header_length:
                self.bad = f"box {self.header[4:8]!r} at {self.next} claims {size} bytes"
            else:
                self.next += size
            self.header.clear()

    def _size32(self) -> int:
        return int.from_bytes(self.header[:4], "big")

    def problem(self) -> str | None:
        """Why the file is not a whole MP4, or None when it is."""
        if self.bad:
            return self.bad
        if not self.to_end and (self.header or self.next != self.offset):
            return f"its boxes end at byte {self.next + len(self.header)}, the body at byte {self.offset}"
        if b"moov" not in self.types:
            return "it has no moov box"
        return None


class ContentCheck:
    """Fed every chunk of one download of ``variant``; raises as soon as the type is wrong."""

    def __init__(self, variant: str, content_type: str | None = None) -> None:
        self.variant = variant
        self.content_type = content_type
        self.head = bytearray()
        self.kind: str | None = None
        self.boxes = Mp4Boxes()

    def feed(self, chunk: bytes) -> None:
        if self.kind is None and len(self.head) < _HEAD:
            self.head += chunk[: _HEAD - len(self.head)]
            if len(self.head) >= _HEAD:
                self._decide()
        if self.kind == "mp4" or (self.kind is None and self.variant == "video"):
            self.boxes.feed(chunk)

    def finish(self) -> str:
        """The type, once the whole body was fed; raises when it is wrong or the MP4 is cut."""
        if self.kind is None:
            self._decide()
        assert self.kind is not None
        if self.kind == "mp4":
            problem = self.boxes.problem()
            if problem is not None:
                raise TransportError(
                    f"download of the {self.variant} incomplete: not a whole MP4 ({problem})",
                    surely_not_sent=False,
                )
        return self.kind

    def _decide(self) -> None:
        kind = sniff(bytes(self.head))
        if kind not in ALLOWED[self.variant]:
            got = kind or f"unrecognised content (first bytes {bytes(self.head).hex() or 'none'})"
            hint = (
                "; the backend (or a gateway in front of it) seems to ignore ?variant= and send the video"
                if kind == "mp4"
                else ""
            )
            raise ContentMismatchError(
                f"download of the {self.variant}: expected {' or '.join(ALLOWED[self.variant])}, got {got} "
                f"(Content-Type {self.content_type or 'none'}){hint}; nothing was saved",
                param="variant",
            )
        self.kind = kind
