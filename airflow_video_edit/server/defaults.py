"""The local server's defaults, in one place: the command line, the in-process server, the app
and the job store all read them from here."""

from __future__ import annotations

JOB_SECONDS = 3.0  # time from create to completed
POLL_AFTER_MS = 1000  # the openai-poll-after-ms header on retrieve answers
MAX_UPLOAD_BYTES = 2 * 1024**3  # largest accepted request body
ASSET_TTL = 3600.0  # seconds a completed job's assets stay downloadable
KEEP_ALIVE_SECONDS = 130  # an idle connection stays open longer than a typical poll interval
