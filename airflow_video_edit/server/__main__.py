"""``python -m airflow_video_edit.server [options]``: same as ``airflow-video-edit serve``."""

from __future__ import annotations

import sys

from airflow_video_edit.server.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
