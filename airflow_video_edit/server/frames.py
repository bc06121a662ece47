"""Frames for the local server's media: raw YUV 4:2:0 planes drawn with byte-slice operations.

No numpy and no Pillow: a plane is a ``bytearray`` whose rows are filled by slice assignment (done
in C by CPython), and text is drawn with a tiny built-in 5x7 bitmap font. ``FrameFactory`` makes
the frames :mod:`airflow_video_edit.server.media` encodes: generated ones (a moving gradient, a
sweeping bar, the prompt and a clock) and edited ones (the source tinted, a band with the prompt).
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from typing import Any

# --- bitmap font --------------------------------------------------------------------------------
# 5x7 glyphs, one int per row, bit 4 = leftmost pixel. Lower case is drawn as upper case; any
# other character is drawn as a small box.
_FONT: dict[str, tuple[int, ...]] = {
    " ": (0, 0, 0, 0, 0, 0, 0),
    "A": (14, 17, 17, 31, 17, 17, 17),
    "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (30, 17, 17, 17, 17, 17, 30),
    "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15),
    "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17),
    "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 10, 4, 4, 4, 4),
    "Z": (31, 1, 2, 4, 8, 16, 31),
    "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    ".": (0, 0, 0, 0, 0, 12, 12),
    ",": (0, 0, 0, 0, 12, 4, 8),
    ":": (0, 12, 12, 0, 12, 12, 0),
    "-": (0, 0, 0, 31, 0, 0, 0),
    "_": (0, 0, 0, 0, 0, 0, 31),
    "!": (4, 4, 4, 4, 4, 0, 4),
    "?": (14, 17, 1, 2, 4, 0, 4),
    "'": (4, 4, 8, 0, 0, 0, 0),
    '"': (10, 10, 0, 0, 0, 0, 0),
    "/": (1, 1, 2, 4, 8, 16, 16),
    "(": (2, 4, 8, 8, 8, 4, 2),
    ")": (8, 4, 2, 2, 2, 4, 8),
    "=": (0, 0, 31, 0, 31, 0, 0),
    "+": (0, 4, 4, 31, 4, 4, 0),
    "#": (10, 10, 31, 10, 31, 10, 10),
    "%": (24, 25, 2, 4, 8, 19, 3),
    "[": (14, 8, 8, 8, 8, 8, 14),
    "]": (14, 2, 2, 2, 2, 2, 14),
}
_UNKNOWN_GLYPH = (0, 14, 10, 10, 10, 14, 0)


def _glyph_runs(char: str) -> list[list[tuple[int, int]]]:
    """Horizontal runs of lit pixels, per glyph row: ``[[(x0, x1), ...], ...]``."""
    rows = _FONT.get(char.upper(), _UNKNOWN_GLYPH)
    runs: list[list[tuple[int, int]]] = []
    for bits in rows:
        row: list[tuple[int, int]] = []
        x = 0
        while x < 5:
            if bits & (16 >> x):
                start = x
                while x < 5 and bits & (16 >> x):
                    x += 1
                row.append((start, x))
            else:
                x += 1
        runs.append(row)
    return runs


_RUNS = {char: _glyph_runs(char) for char in _FONT}


class _Plane:
    """A writable luma plane: a bytearray with a row stride (PyAV pads rows)."""

    def __init__(self, data: bytearray, width: int, height: int, stride: int) -> None:
        self.data, self.width, self.height, self.stride = data, width, height, stride

    def fill_rows(self, top: int, bottom: int, value: int) -> None:
        """Paint rows ``top..bottom`` (exclusive) with one grey level."""
        top, bottom = max(0, top), min(self.height, bottom)
        if bottom > top:
            self.data[top * self.stride : bottom * self.stride] = bytes([value]) * (
                (bottom - top) * self.stride
            )

    def fill_rect(self, x0: int, y0: int, x1: int, y1: int, value: int) -> None:
        """Paint a rectangle (clipped to the plane)."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x1 <= x0:
            return
        span = bytes([value]) * (x1 - x0)
        for y in range(y0, y1):
            offset = y * self.stride
            self.data[offset + x0 : offset + x1] = span

    def text(self, x: int, y: int, text: str, scale: int, value: int = 235) -> None:
        """Draw ``text`` with its top-left corner at ``(x, y)``; 6*scale pixels per character."""
        for index, char in enumerate(text):
            runs = _RUNS.get(char.upper()) or _glyph_runs(char)
            left = x + index * 6 * scale
            if left + 5 * scale > self.width:
                break
            for gy, row in enumerate(runs):
                for start, end in row:
                    self.fill_rect(
                        left + start * scale, y + gy * scale, left + end * scale, y + (gy + 1) * scale, value
                    )

    def text_block(self, x: int, y: int, text: str, scale: int, max_lines: int, value: int = 235) -> int:
        """Draw word-wrapped text; return the y below the last line."""
        per_line = max(1, (self.width - 2 * x) // (6 * scale))
        lines: list[str] = []
        current = ""
        for word in text.split():
            while len(word) > per_line:
                if current:
                    lines.append(current)
                    current = ""
                lines.append(word[:per_line])
                word = word[per_line:]
            candidate = f"{current} {word}".strip()
            if len(candidate) > per_line:
                lines.append(current)
                current = word
            else:
                current = candidate
        if current:
            lines.append(current)
        for line in lines[:max_lines]:
            self.text(x, y, line, scale, value)
            y += 9 * scale
        return y


# --- frames -------------------------------------------------------------------------------------
def colour(seed: str) -> tuple[int, int]:
    """A stable (U, V) chroma pair derived from a string."""
    digest = hashlib.sha256(seed.encode()).digest()
    return 64 + digest[0] % 128, 64 + digest[1] % 128


def _scale_for(width: int) -> int:
    return max(2, width // 160)


class FrameFactory:
    """Builds and decorates yuv420p frames of one size."""

    def __init__(self, width: int, height: int) -> None:
        import av

        self.av = av
        self.width, self.height = width, height
        probe_frame = av.VideoFrame(width, height, "yuv420p")
        self.strides = [plane.line_size for plane in probe_frame.planes]
        self.sizes = [plane.buffer_size for plane in probe_frame.planes]
        # A long periodic ramp: each row of a diagonal gradient is one slice of it.
        ramp = bytes(16 + (i % 200) if (i // 200) % 2 == 0 else 216 - (i % 200) for i in range(400))
        self.ramp = ramp * ((width + height * 2 + 800) // 400 + 2)
        self.scale = _scale_for(width)

    def gradient(self, shift: int) -> _Plane:
        """A luma plane with a diagonal gradient moved by ``shift`` pixels."""
        stride, width, ramp = self.strides[0], self.width, self.ramp
        pad = bytes(stride - width)
        data = bytearray(
            b"".join(
                ramp[(row // 2 + shift) % 400 : (row // 2 + shift) % 400 + width] + pad
                for row in range(self.height)
            )
        )
        return _Plane(data, width, self.height, stride)

    def plane_from(self, frame: Any) -> _Plane:
        """The (copied) luma plane of a decoded yuv420p frame."""
        plane = frame.planes[0]
        data = bytearray(bytes(plane))
        stride = plane.line_size
        if len(data) != self.sizes[0] or stride != self.strides[0]:
            # Re-stride to our layout.
            rows = [data[r * stride : r * stride + self.width] for r in range(self.height)]
            pad = bytes(self.strides[0] - self.width)
            data = bytearray(b"".join(bytes(row) + pad for row in rows))
        return _Plane(data, self.width, self.height, self.strides[0])

    def frame(self, luma: _Plane, chroma: tuple[int, int]) -> Any:
        """Assemble a yuv420p frame from a luma plane and a flat chroma colour."""
        frame = self.av.VideoFrame(self.width, self.height, "yuv420p")
        frame.planes[0].update(bytes(luma.data))
        frame.planes[1].update(bytes([chroma[0]]) * self.sizes[1])
        frame.planes[2].update(bytes([chroma[1]]) * self.sizes[2])
        return frame

    def generated(self, index: int, rate: Fraction, prompt: str, label: str, chroma: tuple[int, int]) -> Any:
        """One generated frame: moving gradient, sweeping bar, label, prompt and clock."""
        luma = self.gradient(index * 6)
        scale = self.scale
        margin = 4 * scale
        luma.fill_rect(0, 0, self.width, 12 * scale, 24)
        luma.text(margin, 3 * scale, label, scale)
        luma.text_block(margin, 16 * scale, prompt, scale, max_lines=8, value=240)
        seconds = float(index / rate)
        luma.fill_rect(margin, self.height - 14 * scale, self.width - margin, self.height - 2 * scale, 24)
        luma.text(margin * 2, self.height - 11 * scale, f"T={seconds:05.2f}S F={index}", scale)
        # A bar sweeping across: makes motion obvious on any frame pair.
        bar_x = int((index * 7 * scale) % max(1, self.width - 8 * scale))
        luma.fill_rect(bar_x, self.height // 2, bar_x + 8 * scale, self.height // 2 + 24 * scale, 250)
        return self.frame(luma, chroma)

    def edited(self, source: Any, prompt: str, chroma: tuple[int, int]) -> Any:
        """A source frame with the edit visible: tint + a band carrying the prompt."""
        if source.format.name != "yuv420p" or source.width != self.width or source.height != self.height:
            source = source.reformat(width=self.width, height=self.height, format="yuv420p")
        luma = self.plane_from(source)
        scale = self.scale
        band_top = self.height - self.height // 4
        luma.fill_rows(band_top, self.height, 20)
        luma.text(4 * scale, band_top + 3 * scale, "EDIT", scale, 250)
        luma.text_block(4 * scale, band_top + 14 * scale, prompt, scale, max_lines=6, value=235)
        return self.frame(luma, chroma)
