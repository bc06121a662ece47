"""A minimal Videos API stand-in for the benchmarks, run as its own process.

GET  /v1/videos/<id>/content  -> the file given on the command line, with Content-Length, via sendfile
POST /v1/videos/edits (or any POST) -> reads and discards the body, answers a valid Video JSON

Usage: python server.py PORT FILE   (prints "ready" on stdout once listening)
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VIDEO = {
    "id": "video_bench",
    "object": "video",
    "model": "sora-2",
    "status": "queued",
    "progress": 0,
    "created_at": 1712697600,
    "size": "720x1280",
    "seconds": "4",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    path_to_file = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if not self.path.split("?")[0].endswith("/content"):
            self.send_error(404)
            return
        size = os.path.getsize(self.path_to_file)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(self.path_to_file, "rb") as handle:
            self.connection.sendfile(handle)

    def do_POST(self) -> None:
        received = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                while size:
                    got = len(self.rfile.read(min(size, 1 << 20)))
                    received += got
                    size -= got
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length", "0"))
            while remaining:
                got = len(self.rfile.read(min(remaining, 1 << 20)))
                if not got:
                    break
                received += got
                remaining -= got
        body = json.dumps({**VIDEO, "received_bytes": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    Handler.path_to_file = path
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
