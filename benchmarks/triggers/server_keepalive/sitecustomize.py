"""Put on PYTHONPATH of the local server's child process only: uvicorn keeps idle connections
``VIDEOS_BENCH_KEEP_ALIVE`` seconds instead of its default 5 (the bundled CLI has no option)."""

import os

_seconds = os.environ.get("VIDEOS_BENCH_KEEP_ALIVE")
if _seconds:
    import uvicorn

    _run = uvicorn.run

    def _run_with_keep_alive(*args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("timeout_keep_alive", int(float(_seconds)))
        return _run(*args, **kwargs)

    uvicorn.run = _run_with_keep_alive
