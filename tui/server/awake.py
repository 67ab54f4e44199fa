"""Keeping a Mac awake while jobs run: `caffeinate -i -w <server pid>` prevents idle sleep until
it is stopped or the server exits (so a killed server can never leave the Mac sleepless), and it
is stopped as soon as there is nothing to do (caffeinate(8))."""

from __future__ import annotations

import logging
import shutil
import subprocess

log = logging.getLogger("tui.server")


def awake_command(platform: str, pid: int, found: str | None) -> list[str] | None:
    """The command that keeps this machine awake, or None where there is none (Linux: systemd
    does not sleep a server that is working, and there is no per-process switch to flip)."""
    if platform != "darwin" or not found:
        return None
    return [found, "-i", "-w", str(pid)]


class KeepAwake:
    def __init__(self, command: list[str] | None):
        self.command = command
        self.process: subprocess.Popen | None = None

    @classmethod
    def for_this_machine(cls, platform: str, pid: int) -> "KeepAwake":
        return cls(awake_command(platform, pid, shutil.which("caffeinate")))

    def update(self, busy: bool) -> None:
        """Hold the machine awake while ``busy``; let it sleep again once not."""
        running = self.process is not None and self.process.poll() is None
        if busy and not running and self.command:
            try:
                self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
                log.info("keeping the machine awake while jobs run (%s)", " ".join(self.command[:2]))
            except OSError as error:
                log.warning("cannot keep the machine awake: %s", error)
                self.command = None
        elif not busy and running:
            self.stop()
            log.info("nothing to do: the machine may sleep again")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
