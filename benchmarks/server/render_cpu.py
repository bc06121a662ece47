"""CPU time to render the media of a 4-second 720x1280 job (video + thumbnail + spritesheet)."""

import resource
import tempfile
import time
from pathlib import Path

from airflow_video_edit.server import media


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        media.render_generated(Path(tmp) / "warm", size="720x1280", seconds=1, prompt="warm up", label="X")
        for kind in ("create", "edit"):
            before = resource.getrusage(resource.RUSAGE_SELF)
            wall = time.perf_counter()
            if kind == "create":
                files = media.render_generated(
                    Path(tmp) / "a",
                    size="720x1280",
                    seconds=4,
                    prompt="A calico cat on stage",
                    label="SORA-2",
                )
            else:
                files = media.render_edit(
                    Path(tmp) / "b", source=Path(tmp) / "a" / "video.mp4", prompt="snow"
                )
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            info = media.probe(files.video)
            print(
                f"{kind}: cpu {cpu:.2f} s (all threads), wall {time.perf_counter() - wall:.2f} s, "
                f"{info.width}x{info.height} {info.duration:.1f} s, mp4 {files.video.stat().st_size} B"
            )


if __name__ == "__main__":
    main()
