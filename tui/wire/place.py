"""Where the server listens: a private folder per sdtui home (one server per history), and who
is on the other end of a connection."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import sys
import tempfile
from pathlib import Path


class PlaceError(OSError):
    """The runtime folder is not private; the message says why."""


def runtime_dir(data_dir: Path) -> Path:
    """``$XDG_RUNTIME_DIR`` (or the temp folder, when that is unset or gone, as after a logout)
    / sdtui-<uid>-<hash of the data folder>: short, as a socket path is limited to about 100
    bytes, and one per history, as a server writes one."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if not base or not os.path.isdir(base):
        base = tempfile.gettempdir()
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]
    return Path(base) / f"sdtui-{os.getuid()}-{digest}"


def private_dir(folder: Path) -> Path:
    """Make ``folder`` (mode 0700), or check an existing one is ours and closed to others."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise PlaceError(f"server: {folder} is not a folder; remove it")
    if info.st_uid != os.getuid():
        raise PlaceError(f"server: {folder} belongs to another user; remove it or set XDG_RUNTIME_DIR")
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder


def socket_path(data_dir: Path) -> Path:
    return runtime_dir(data_dir) / "sock"


def pid_path(data_dir: Path) -> Path:
    return runtime_dir(data_dir) / "pid"


def peer_uid(connection: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (None where it cannot be asked)."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
        data = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", data)[1]
    if sys.platform == "darwin":  # LOCAL_PEERCRED on SOL_LOCAL: struct xucred {version, uid, ...}
        data = connection.getsockopt(0, 0x001, 76)
        return struct.unpack_from("Ii", data)[1]
    return None
