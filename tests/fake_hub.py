"""A local HTTP server that answers the Hugging Face Hub requests a model download makes
(repository info with file sizes and hashes, file downloads with byte ranges, gated and
missing repositories), so downloads, cancel and resume run against real HTTP here,
where the real Hub cannot be reached. Point HF_ENDPOINT at ``FakeHub.url``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "feedc0de" * 5


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.gated: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []  # (file path, Range header)
        self.bytes_sent = 0
        self.delay_per_chunk = 0.0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_folder(self, repo_id: str, folder: Path) -> None:
        self.repos[repo_id] = {str(p.relative_to(folder)): p.read_bytes()
                               for p in sorted(folder.rglob("*")) if p.is_file()}

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _info(self, repo_id: str) -> dict:
        siblings = []
        for name, data in self.repos[repo_id].items():
            entry = {"rfilename": name, "size": len(data), "blobId": hashlib.sha1(data).hexdigest()}
            if name.endswith(".safetensors"):
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            siblings.append(entry)
        return {"id": repo_id, "sha": COMMIT, "siblings": siblings, "gated": repo_id in self.gated}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _error(self, status: int, code: str) -> None:
                body = json.dumps({"error": code}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path):
                    if m[1] not in hub.repos:
                        return self._error(404, "RepoNotFound")
                    body = json.dumps(hub._info(m[1])).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    repo_id, file = m[1], m[3]
                    if repo_id not in hub.repos:
                        return self._error(404, "RepoNotFound")
                    if repo_id in hub.gated:
                        return self._error(403, "GatedRepo")
                    data = hub.repos[repo_id].get(file)
                    if data is None:
                        return self._error(404, "EntryNotFound")
                    wanted = self.headers.get("Range")
                    hub.requests.append((file, wanted))
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1]) if wanted else 0
                    self.send_response(206 if wanted else 200)
                    if wanted:
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    self.send_header("Content-Length", str(len(data) - start))
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.end_headers()
                    try:
                        for offset in range(start, len(data), 64 * 1024):
                            piece = data[offset:offset + 64 * 1024]
                            self.wfile.write(piece)
                            hub.bytes_sent += len(piece)
                            if hub.delay_per_chunk:
                                time.sleep(hub.delay_per_chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                self._error(404, "NotFound")

        return Handler
