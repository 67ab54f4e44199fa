"""A local HTTP server that answers the Hugging Face Hub requests a model download makes
(repository info with file sizes and hashes, file metadata and downloads with byte ranges,
gated and missing repositories), so downloads, cancel and resume run against real HTTP here,
where the real Hub cannot be reached. Point HF_ENDPOINT at ``FakeHub.url``.

As on the real Hub, large (LFS) files can be served by a second server: with a ``FakeCdn``,
the Hub answers their downloads with a redirect to it. ``FakeProxy`` is an HTTP forward
proxy that reaches these servers under host names that resolve nowhere else.
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
LFS_SUFFIXES = (".safetensors", ".gguf")  # stored in LFS on the Hub: a sha256 of their own, served by the CDN


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.gated: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []  # (file path, Range header)
        self.served: list[tuple[str, str]] = []  # (repository, file path) of each file download
        self.calls: list[str] = []  # "GET /path" of every request, API calls too
        self.bytes_sent = 0
        self.delay_per_chunk = 0.0
        self.cdn: FakeCdn | None = None  # set one to serve .safetensors files by redirect
        self.cdn_base = ""  # the CDN's address in redirects, when a proxy names it otherwise
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_folder(self, repo_id: str, folder: Path) -> None:
        self.repos[repo_id] = {str(p.relative_to(folder)): p.read_bytes()
                               for p in sorted(folder.rglob("*")) if p.is_file()}

    def fetched(self, repo_id: str) -> set[str]:
        """The files of ``repo_id`` downloaded so far."""
        return {path for repo, path in self.served if repo == repo_id}

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
            if name.endswith(LFS_SUFFIXES):
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
                hub.calls.append(f"GET {path}")
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(/revision/[^/]+|/tree/[^/]+)?", path):
                    if m[1] not in hub.repos:
                        return self._error(404, "RepoNotFound")
                    info = hub._info(m[1])
                    if (m[2] or "").startswith("/tree/"):  # the file listing snapshot_download asks for
                        info = [{"type": "file", "path": f["rfilename"], "size": f["size"], "oid": f["blobId"],
                                 **({"lfs": {"oid": f["lfs"]["sha256"], "size": f["size"], "pointerSize": 130}}
                                    if "lfs" in f else {})} for f in info["siblings"]]
                    body = json.dumps(info).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    data = self._file(m[1], m[3])
                    if data is None:
                        return
                    hub.requests.append((m[3], self.headers.get("Range")))
                    hub.served.append((m[1], m[3]))
                    if hub.cdn is not None and m[3].endswith(LFS_SUFFIXES):
                        sha = hashlib.sha256(data).hexdigest()
                        hub.cdn.blobs[sha] = data
                        self.send_response(302)
                        self.send_header("Location", f"{hub.cdn_base or hub.cdn.url}/blobs/{sha}?expires=1")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    return serve_bytes(self, data, hub)
                self._error(404, "NotFound")

            def _file(self, repo_id: str, file: str) -> bytes | None:
                if repo_id not in hub.repos:
                    return self._error(404, "RepoNotFound")
                if repo_id in hub.gated:
                    return self._error(403, "GatedRepo")
                data = hub.repos[repo_id].get(file)
                if data is None:
                    return self._error(404, "EntryNotFound")
                return data

            def do_HEAD(self):
                """File metadata, as huggingface_hub's hf_hub_download asks for it first."""
                hub.calls.append(f"HEAD {self.path.split('?', 1)[0]}")
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?", 1)[0])
                data = self._file(m[1], m[3]) if m else None
                if data is None:
                    if not m:
                        self._error(404, "NotFound")
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                if m[3].endswith(LFS_SUFFIXES):
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()

        return Handler


def serve_bytes(handler: BaseHTTPRequestHandler, data: bytes, counter) -> None:
    """``data`` with its Range honoured, in 64 KiB pieces, counted in ``counter.bytes_sent``."""
    wanted = handler.headers.get("Range")
    start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1]) if wanted else 0
    handler.send_response(206 if wanted else 200)
    if wanted:
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    handler.send_header("Content-Length", str(len(data) - start))
    handler.send_header("X-Repo-Commit", COMMIT)
    handler.end_headers()
    try:
        for offset in range(start, len(data), 64 * 1024):
            piece = data[offset:offset + 64 * 1024]
            handler.wfile.write(piece)
            counter.bytes_sent += len(piece)
            if counter.delay_per_chunk:
                time.sleep(counter.delay_per_chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass


class _Server:
    def __init__(self, handler):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeCdn(_Server):
    """Serves the blobs the Hub redirects to, by content hash, with byte ranges."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self.delay_per_chunk = 0.0
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                sha = self.path.split("?", 1)[0].removeprefix("/blobs/")
                cdn.requests.append((sha, self.headers.get("Range")))
                if sha not in cdn.blobs:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                serve_bytes(self, cdn.blobs[sha], cdn)

        super().__init__(Handler)


class FakeProxy(_Server):
    """An HTTP forward proxy: requests in absolute form (``GET http://host/path``) for the host
    names in ``routes`` go to the address given there; every other host gets a 502."""

    def __init__(self, routes: dict[str, str]):
        self.routes = routes
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self, method: str) -> None:
                import http.client
                from urllib.parse import urlsplit

                target = urlsplit(self.path)
                proxy.requests.append(f"{method} {target.hostname}{target.path}")
                upstream = proxy.routes.get(target.hostname or "")
                if upstream is None:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                address = urlsplit(upstream)
                connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
                path = target.path + (f"?{target.query}" if target.query else "")
                connection.request(method, path, headers=headers)
                response = connection.getresponse()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                remaining = int(response.getheader("Content-Length") or 0) if method != "HEAD" else 0
                while remaining > 0:  # bounded by the length the server announced
                    piece = response.read(min(remaining, 64 * 1024))
                    if not piece:
                        break
                    self.wfile.write(piece)
                    remaining -= len(piece)
                connection.close()
                self.close_connection = True

            def do_GET(self):
                self._forward("GET")

            def do_HEAD(self):
                self._forward("HEAD")

        super().__init__(Handler)
