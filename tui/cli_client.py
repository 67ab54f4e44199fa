"""``sdtui generate`` as a client of the server: the job runs there, with the model the server
already holds; this process draws the progress, prints each saved path and imports no torch.

Ctrl-C or SIGTERM cancels this job (and only it) and waits for it to be recorded; a second
one leaves at once. SIGHUP (the terminal went away) leaves the job running: its image still
arrives in the history.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Callable

from tui.cli import EXIT_FAILED, EXIT_OK, Interrupts


def generate_via_server(requests: list, settings, options: dict[str, Any], output: Path | None, chosen: set[str],
                        say: Callable[..., None], saved: dict[int, list[str]] | None = None,
                        each: str = "prompt of the template") -> int:
    """Queue ``requests`` (one per prompt of a wildcard template), all at once, and follow them
    until each is done; with ``output``, several jobs' images are numbered (fox-1.png, fox-2.png).
    ``saved`` gets each request's saved paths, by its place in ``requests``."""
    from tui.cli_progress import StderrProgress
    from tui.jobs import numbered_output
    from tui.locations import locations
    from tui.protocol import decode_event
    from tui.server.client import ServerGone, ServerRefused, connect_or_start
    from tui.text import visible

    places = locations()
    progress = StderrProgress()
    interrupts = Interrupts(hang_up_leaves=True)
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
        pending: list[str] = []
        number_of: dict[Any, int] = {}  # job id -> its request's place in ``requests``
        for number, request in enumerate(requests):
            job_output = numbered_output(output, number, len(requests)) if output else None
            reply = connection.request({"type": "generate", "request": request.to_dict(), "options": options,
                                        "output": str(job_output) if job_output else None, "chosen": sorted(chosen),
                                        "outputs_dir": str(Path(settings.outputs_dir).expanduser().resolve())
                                        if settings.outputs_dir else None,
                                        "family_defaults": settings.family_defaults}, "queued")
            if reply.get("type") == "error":
                say(str(reply.get("message")))
                outcome.setdefault("failed", None)
                break
            pending.append(reply["job"])
            number_of[reply["job"]] = number
        if len(requests) > 1 and pending:
            say(f"queued {len(pending)} jobs, one for each {each}")
        cancel_sent = False
        while pending:
            if interrupts.hung_up.is_set():
                return 128 + signal.SIGHUP  # the jobs go on without this client
            if interrupts.cancel.is_set() and not cancel_sent:
                for job in pending:
                    connection.send({"type": "cancel", "job": job})
                cancel_sent = True
            frame = connection.receive(timeout=0.2)
            if frame is None:
                continue
            message, payload = frame
            job = message.get("job")
            if message.get("type") != "event" or (job is not None and job not in pending):
                continue
            kind = message.get("event")
            if job is None and kind not in ("LoadStarted", "DownloadProgress", "Loaded", "Notice"):
                continue
            if kind == "ImageSaved":  # the progress line first, so the path never joins the bar on a terminal
                progress.image_line(message["index"], message["request"]["count"], message["seed"],
                                    message["timings"]["total_s"], message["timings"]["it_per_s"])
                path = message["path"]
                print(path if not sys.stdout.isatty() else visible(path), flush=True)
                if saved is not None:
                    saved.setdefault(number_of[job], []).append(path)
            elif kind == "Cancelled" and not cancel_sent:
                outcome.setdefault("failed", f"job {job} was cancelled from another sdtui (the app, or its "
                                             "Escape key); images finished before are saved")
                progress(decode_event(message, payload))
            elif kind in ("LoadFailed", "SaveFailed"):
                outcome.setdefault("failed", message["message"])  # the first says why
            elif kind == "JobDone":
                pending.remove(job)
            elif kind == "Finished":
                continue  # its line comes with ImageSaved, once the image is on disk
            else:
                event = decode_event(message, payload)
                if not isinstance(event, dict):
                    progress(event)
                    if type(event).__name__ == "Failed":
                        outcome.setdefault("failed", event.message)
    except ServerGone as error:
        say(f"{error}; the job's images so far are in the history; run the command again to start a new server")
        return EXIT_FAILED
    finally:
        connection.close()
    if interrupts.exit_status:
        return interrupts.exit_status
    if "failed" in outcome:
        if outcome["failed"]:
            say(outcome["failed"])
        return EXIT_FAILED
    return EXIT_OK
