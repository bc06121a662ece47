"""Real media for the local server: H.264 MP4s, a thumbnail and a spritesheet, rendered with PyAV.

No numpy and no Pillow: frames are built as raw YUV 4:2:0 planes with byte-slice operations
(fast, done in C by CPython) and text is drawn with a tiny built-in 5x7 bitmap font.

* Create and remix jobs render their own frames: a moving diagonal gradient, a sweeping bar,
  the prompt and a clock.
* An edit decodes its source video and re-encodes every frame with the edit made visible: the
  picture is tinted (chroma replaced, luma kept, so the source stays recognisable) and a dark band
  carrying the edit prompt is drawn over the bottom of the picture.
* An extension copies the source frames and appends freshly generated frames.

Thumbnails and spritesheets are WebP (``image/webp``) when the ``libwebp`` encoder is available
(it is in the PyAV wheels), else JPEG. PyAV is imported lazily so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

FPS = 8
"""Frame rate of rendered videos: low on purpose, the media only has to be real, not pretty."""
SPRITE_COLUMNS = 5
SPRITE_ROWS = 2
SPRITE_TILE_WIDTH = 160

VIDEO_FILE = "video.mp4"


class MediaError(ValueError):
    """An input file is not a decodable video (or image)."""


@dataclass(frozen=True)
class Probe:
    """What :func:`probe` learns about a media file."""

    width: int
    height: int
    duration: float
    rate: Fraction


@dataclass(frozen=True)
class MediaFiles:
    """Paths of the rendered assets of one job."""

    video: Path
    thumbnail: Path
    spritesheet: Path


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
def _colour(seed: str) -> tuple[int, int]:
    """A stable (U, V) chroma pair derived from a string."""
    digest = hashlib.sha256(seed.encode()).digest()
    return 64 + digest[0] % 128, 64 + digest[1] % 128


def _scale_for(width: int) -> int:
    return max(2, width // 160)


class _FrameFactory:
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


# --- encoding -----------------------------------------------------------------------------------
def _video_encoder() -> str:
    import av

    for name in ("libx264", "h264"):
        try:
            av.Codec(name, "w")
            return name
        except Exception:  # noqa: S112 - try the next encoder
            continue
    raise MediaError("PyAV has no H.264 encoder")


def image_format() -> tuple[str, str, str]:
    """``(file extension, content type, encoder)`` used for thumbnails and spritesheets."""
    import av

    try:
        av.Codec("libwebp", "w")
        return "webp", "image/webp", "libwebp"
    except Exception:
        return "jpg", "image/jpeg", "mjpeg"


def preview_paths(directory: Path) -> MediaFiles:
    """Where the assets of a job directory live."""
    ext = image_format()[0]
    return MediaFiles(
        directory / VIDEO_FILE, directory / f"thumbnail.{ext}", directory / f"spritesheet.{ext}"
    )


def _write_image(path: Path, frame: Any) -> None:
    import av

    ext, _, codec = image_format()
    tmp = path.with_suffix(".tmp")
    with av.open(str(tmp), "w", format="webp" if ext == "webp" else "image2") as out:
        stream: Any = out.add_stream(codec, rate=1)
        stream.width, stream.height = frame.width, frame.height
        stream.pix_fmt = "yuv420p" if ext == "webp" else "yuvj420p"
        image = frame.reformat(format=stream.pix_fmt)
        image.pts = 0
        for packet in stream.encode(image):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)


def _spritesheet(frames: list[Any]) -> Any:
    """Compose up to ``SPRITE_COLUMNS * SPRITE_ROWS`` frames into one RGB grid frame."""
    import av

    first = frames[0]
    tile_w = SPRITE_TILE_WIDTH
    tile_h = max(2, round(first.height * tile_w / first.width) // 2 * 2)
    sheet_w, sheet_h = tile_w * SPRITE_COLUMNS, tile_h * SPRITE_ROWS
    sheet = av.VideoFrame(sheet_w, sheet_h, "rgb24")
    stride = sheet.planes[0].line_size
    data = bytearray(sheet.planes[0].buffer_size)
    for index, frame in enumerate(frames[: SPRITE_COLUMNS * SPRITE_ROWS]):
        tile = frame.reformat(width=tile_w, height=tile_h, format="rgb24")
        plane = tile.planes[0]
        raw, tile_stride = bytes(plane), plane.line_size
        x0 = (index % SPRITE_COLUMNS) * tile_w * 3
        y0 = (index // SPRITE_COLUMNS) * tile_h
        for row in range(tile_h):
            offset = (y0 + row) * stride + x0
            data[offset : offset + tile_w * 3] = raw[row * tile_stride : row * tile_stride + tile_w * 3]
    sheet.planes[0].update(bytes(data))
    return sheet


def _sample_indices(expected_frames: int) -> tuple[int, list[int]]:
    """Frame indices used for the thumbnail and for the spritesheet tiles."""
    expected = max(1, expected_frames)
    step = max(1, expected // (SPRITE_COLUMNS * SPRITE_ROWS))
    return expected // 3, list(range(0, expected, step))[: SPRITE_COLUMNS * SPRITE_ROWS]


class _Sampler:
    """Keeps the few frames the previews need (not the whole video: flat memory)."""

    def __init__(self, expected_frames: int) -> None:
        self.thumb_index, tiles = _sample_indices(expected_frames)
        self.tile_indices = set(tiles)
        self.thumbnail: Any = None
        self.tiles: list[Any] = []
        self.last: Any = None

    def offer(self, index: int, frame: Any) -> None:
        self.last = frame
        if index == self.thumb_index:
            self.thumbnail = frame
        if index in self.tile_indices:
            self.tiles.append(frame)

    def write(self, files: MediaFiles) -> None:
        if self.last is None:
            raise MediaError("no video frames")
        _write_image(files.thumbnail, self.thumbnail if self.thumbnail is not None else self.last)
        _write_image(files.spritesheet, _spritesheet(self.tiles or [self.last]))


def _encode(
    directory: Path, width: int, height: int, rate: Fraction, expected_frames: int, frames: Iterable[Any]
) -> MediaFiles:
    """Encode frames to ``video.mp4`` and derive the thumbnail and the spritesheet."""
    import av

    directory.mkdir(parents=True, exist_ok=True)
    files = preview_paths(directory)
    tmp = directory / "video.tmp.mp4"
    sampler = _Sampler(expected_frames)
    with av.open(str(tmp), "w") as out:
        stream: Any = out.add_stream(_video_encoder(), rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "28"}
        for index, frame in enumerate(frames):
            frame.pts = index
            frame.time_base = 1 / rate
            sampler.offer(index, frame)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    sampler.write(files)
    tmp.replace(files.video)
    return files


def _size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def _generated_frames(
    factory: _FrameFactory, rate: Fraction, seconds: float, prompt: str, label: str, start: int = 0
) -> Iterator[Any]:
    chroma = _colour(prompt)
    total = round(seconds * rate)
    for index in range(start, start + total):
        yield factory.generated(index, rate, prompt, label, chroma)


def render_generated(directory: Path, *, size: str, seconds: float, prompt: str, label: str) -> MediaFiles:
    """Render a create/remix job: ``seconds`` of generated frames at ``size`` (``"720x1280"``)."""
    width, height = _size(size)
    rate = Fraction(FPS)
    factory = _FrameFactory(width, height)
    frames = _generated_frames(factory, rate, seconds, prompt, label)
    return _encode(directory, width, height, rate, round(seconds * rate), frames)


def _decode(path: Path) -> tuple[Probe, Iterator[Any]]:
    import av

    info = probe(path)

    def frames() -> Iterator[Any]:
        with av.open(str(path)) as container:
            yield from container.decode(video=0)

    return info, frames()


def render_edit(directory: Path, *, source: Path, prompt: str) -> MediaFiles:
    """Render an edit: the source's frames, tinted, with a band carrying the prompt."""
    info, frames = _decode(source)
    factory = _FrameFactory(info.width, info.height)
    chroma = _colour("edit:" + prompt)
    return _encode(
        directory,
        info.width,
        info.height,
        info.rate,
        round(info.duration * info.rate),
        (factory.edited(frame, prompt, chroma) for frame in frames),
    )


def render_extension(directory: Path, *, source: Path, prompt: str, seconds: float) -> MediaFiles:
    """Render an extension: the source's frames, then ``seconds`` of new generated frames."""
    info, frames = _decode(source)
    factory = _FrameFactory(info.width, info.height)

    def stitched() -> Iterator[Any]:
        count = 0
        for frame in frames:
            count += 1
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            yield frame
        yield from _generated_frames(factory, info.rate, seconds, prompt, "EXTENSION", start=count)

    expected = round((info.duration + seconds) * info.rate)
    return _encode(directory, info.width, info.height, info.rate, expected, stitched())


def render_previews(directory: Path, *, source: Path) -> MediaFiles:
    """Thumbnail and spritesheet for an existing MP4 (imported videos); the MP4 is left as it is."""
    info, frames = _decode(source)
    sampler = _Sampler(round(info.duration * info.rate))
    for index, frame in enumerate(frames):
        sampler.offer(index, frame)
    files = preview_paths(directory)
    sampler.write(files)
    return files


def probe(path: Path) -> Probe:
    """Width, height, duration (s) and frame rate of the first video stream of a file.

    Raises:
        MediaError: the file is not a decodable video.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path.name}: no video stream")
            stream = container.streams.video[0]
            rate = Fraction(stream.average_rate or stream.guessed_rate or FPS)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = (stream.frames or 0) / float(rate)
            return Probe(stream.codec_context.width, stream.codec_context.height, duration, rate)
    except MediaError:
        raise
    except Exception as exc:  # av raises many types (InvalidDataError, ...)
        raise MediaError(f"{path.name}: not a decodable video ({exc.__class__.__name__})") from exc
