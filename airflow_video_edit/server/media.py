"""Real media for the local server: H.264 MP4s, a thumbnail and a spritesheet, rendered with PyAV.

The frames come from :mod:`airflow_video_edit.server.frames` (raw YUV 4:2:0 planes, no numpy and
no Pillow); this module encodes them and reads sources back.

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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .frames import FrameFactory, colour

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


def spec_size(width: int, height: int) -> str:
    """The spec's ``VideoSize`` for a clip of ``width`` x ``height``: same orientation, 720p."""
    return "1280x720" if width > height else "720x1280"


def _size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def _generated_frames(
    factory: FrameFactory, rate: Fraction, seconds: float, prompt: str, label: str, start: int = 0
) -> Iterator[Any]:
    chroma = colour(prompt)
    total = round(seconds * rate)
    for index in range(start, start + total):
        yield factory.generated(index, rate, prompt, label, chroma)


def render_generated(directory: Path, *, size: str, seconds: float, prompt: str, label: str) -> MediaFiles:
    """Render a create/remix job: ``seconds`` of generated frames at ``size`` (``"720x1280"``)."""
    width, height = _size(size)
    rate = Fraction(FPS)
    factory = FrameFactory(width, height)
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
    factory = FrameFactory(info.width, info.height)
    chroma = colour("edit:" + prompt)
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
    factory = FrameFactory(info.width, info.height)

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
