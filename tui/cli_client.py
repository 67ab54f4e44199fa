"""``sdtui generate`` as a client of the server: the job runs there, with the model the server
already holds; this process draws the progress, prints each saved path and imports no torch.

Ctrl-C or SIGTERM cancels this job (and only it) and waits for it to be recorded; a second
one leaves at once. SIGHUP (the terminal went away) leaves the job running: its image still
arrives in the history.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

EXIT_OK, EXIT_FAILED = 0, 1
CANCEL_SIGNALS = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM"}


class _Signals:
    """Which signal came first (0: none); SIGHUP is told apart, as it leaves the job running."""

    def __init__(self, say: Callable[[str, bool], None]):
        self.first = 0
        self.hung_up = threading.Event()
        self.cancel_now = threading.Event()
        self._say = say
        for name in CANCEL_SIGNALS:
            signal.signal(getattr(signal, name), self._handle)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._hang_up)

    def _handle(self, signum, frame) -> None:
        if self.first:
            raise KeyboardInterrupt
        self.first = signum
        cause = CANCEL_SIGNALS.get(signal.Signals(signum).name, "a signal")
        try:
            self._say(f"{cause}: cancelling after this step (again to quit at once)", True)
        except OSError:
            pass
        self.cancel_now.set()

    def _hang_up(self, signum, frame) -> None:
        self.first = self.first or signum
        self.hung_up.set()


def generate_via_server(request, settings, options: dict[str, Any], output: Path | None, chosen: set[str],
                        say: Callable[..., None]) -> int:
    from tui.cli_progress import StderrProgress
    from tui.locations import locations
    from tui.protocol import decode_event
    from tui.server.client import ServerGone, ServerRefused, connect_or_start
    from tui.text import visible

    places = locations()
    progress = StderrProgress()
    signals = _Signals(lambda text, first=False: say(text, newline_first=first))
    try:
        connection = connect_or_start(places.data_dir, "generate", places.logs_dir / "server.log",
                                      on_start=lambda: say(f"starting the sdtui server (log: "
                                                           f"{places.logs_dir / 'server.log'})"))
    except ServerRefused as error:
        say(str(error))
        return EXIT_FAILED
    except (ServerGone, OSError) as error:
        say(str(error))
        return EXIT_FAILED
    if connection.welcome.get("model"):
        say(f"using the server's loaded model, {connection.welcome['model']}")
    outcome: dict[str, Any] = {}
    try:
        reply = connection.request({"type": "generate", "request": request.to_dict(), "options": options,
                                    "output": str(output) if output else None, "chosen": sorted(chosen),
                                    "outputs_dir": str(Path(settings.outputs_dir).expanduser().resolve())
                                    if settings.outputs_dir else None,
                                    "family_defaults": settings.family_defaults}, "queued")
        if reply.get("type") == "error":
            say(str(reply.get("message")))
            return EXIT_FAILED
        job = reply["job"]
        cancel_sent = False
        while True:
            if signals.hung_up.is_set():
                return 128 + signal.SIGHUP  # the job goes on without this client
            if signals.cancel_now.is_set() and not cancel_sent:
                connection.send({"type": "cancel", "job": job})
                cancel_sent = True
            frame = connection.receive(timeout=0.2)
            if frame is None:
                continue
            message, payload = frame
            if message.get("type") != "event" or message.get("job") not in (job, None):
                continue
            kind = message.get("event")
            if message.get("job") is None and kind not in ("LoadStarted", "DownloadProgress", "Loaded", "Notice"):
                continue
            if kind == "ImageSaved":  # the progress line first, so the path never joins the bar on a terminal
                progress.image_line(message["index"], message["request"]["count"], message["seed"],
                                    message["timings"]["total_s"], message["timings"]["it_per_s"])
                path = message["path"]
                print(path if not sys.stdout.isatty() else visible(path), flush=True)
            elif kind in ("LoadFailed", "SaveFailed"):
                outcome["failed"] = message["message"]
            elif kind == "JobDone":
                break
            else:
                event = decode_event(message, payload)
                if not isinstance(event, dict):
                    progress(event)
                    if type(event).__name__ == "Failed":
                        outcome["failed"] = event.message
                    elif type(event).__name__ == "Cancelled":
                        outcome["cancelled"] = True
    except ServerGone as error:
        say(f"{error}; the job's images so far are in the history; run the command again to start a new server")
        return EXIT_FAILED
    finally:
        connection.close()
    if signals.first:
        return 128 + signals.first
    if "failed" in outcome:
        say(outcome["failed"])
        return EXIT_FAILED
    return EXIT_OK
