"""``sdtui generate`` as a client of the server: the job runs there, with the model the server
already holds; this process draws the progress, prints each saved path and imports no torch.

Ctrl-C or SIGTERM cancels this job (and only it) and waits for it to be recorded; a second
one leaves at once. SIGHUP (the terminal went away) leaves the job running: its image still
arrives in the history.

Every job ends with one JobDone saying how (done, failed, refused, cancelled, dropped, stopped).
Each failure is said once, at the end; the exit status is 2 when every failure was bad input
(refused), else 1.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Callable

from tui.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Interrupts

from tui.engine.events import Cancelled, DownloadProgress, Loaded, LoadStarted, Notice, Started, Step
from tui.wire.events import ImageSaved, JobDone

# Events about the model, which matter to this job even when another client's load caused them.
MODEL_EVENTS = (LoadStarted, DownloadProgress, Loaded, Notice)
# What the progress lines show; the rest (Finished, Failed, LoadFailed, SaveFailed) is said once, at
# the end, from the job's JobDone, and the queue's own reports are the app's to show.
SHOWN = (*MODEL_EVENTS, Started, Step, Cancelled)


def generate_via_server(requests: list, settings, options: dict[str, Any], output: Path | None, chosen: set[str],
                        say: Callable[..., None], saved: dict[int, list[str]] | None = None,
                        each: str = "prompt of the template", verbose: bool = False) -> int:
    """Queue ``requests`` (one per prompt of a wildcard template), all at once, and follow them
    until each is done; with ``output``, several jobs' images are numbered (fox-1.png, fox-2.png).
    ``saved`` gets each request's saved paths, by its place in ``requests``. ``verbose``: the
    server's log lines about these jobs are printed too."""
    from tui.cli.progress import StderrProgress
    from tui.locations import locations
    from tui.client.connection import ServerGone, ServerRefused, connect_or_start

    places = locations()
    server_log = places.logs_dir / "server.log"
    interrupts = Interrupts(hang_up_leaves=True)
    try:
        connection = connect_or_start(places.data_dir, "generate", server_log, logs=verbose,
                                      on_start=lambda: say(f"starting the sdtui server (log: {server_log})"))
    except (ServerRefused, ServerGone, OSError) as error:
        say(str(error))
        return EXIT_FAILED
    jobs = _Jobs(connection, StderrProgress(), say, interrupts, saved if saved is not None else {})
    try:
        jobs.queue(requests, settings, options, output, chosen)
        if len(requests) > 1 and jobs.pending:
            say(f"queued {len(jobs.pending)} jobs, one for each {each}")
        hung_up = jobs.follow()
        if hung_up is not None:
            return hung_up  # the jobs go on without this client
    except ServerGone as error:
        jobs.progress.end_bar()
        say(f"{error}; the job's images so far are in the history; {server_log} may say why; run the command "
            "again to start a new server")
        return EXIT_FAILED
    finally:
        connection.close()
    return jobs.finish()


class _Jobs:
    """This command's jobs on the server, followed until each has had its JobDone."""

    def __init__(self, connection, progress, say: Callable[..., None], interrupts: Interrupts,
                 saved: dict[int, list[str]]):
        self.connection = connection
        self.progress = progress
        self.say = say
        self.interrupts = interrupts
        self.saved = saved
        self.pending: list[int] = []
        self.place_of: dict[int, int] = {}  # job number -> its request's place in the command's list
        self.cancel_sent = False
        self.model = connection.welcome.model  # the server's loaded model, as it changes
        self.model_said = False  # loading it, or using the loaded one, has been said
        self.notes: list[str] = []  # what the user's own cancel did to jobs that had not started
        self.failures: list[str] = []
        self.run_failed = False  # a failure that was not bad input

    def queue(self, requests: list, settings, options: dict[str, Any], output: Path | None, chosen: set[str]) -> None:
        from tui.server.jobs import numbered_output

        outputs_dir = str(Path(settings.outputs_dir).expanduser().resolve()) if settings.outputs_dir else None
        for place, request in enumerate(requests):
            job_output = numbered_output(output, place, len(requests)) if output else None
            reply = self.connection.request({"type": "generate", "request": request.to_dict(), "options": options,
                                             "output": str(job_output) if job_output else None,
                                             "chosen": sorted(chosen), "outputs_dir": outputs_dir,
                                             "family_defaults": settings.family_defaults}, "queued")
            if reply.get("type") == "error":  # the server's check of the request: bad input
                self._fail(str(reply.get("message")), bad_input=True)
                return
            self.pending.append(reply["job"])
            self.place_of[reply["job"]] = place

    def follow(self) -> int | None:
        """Read until every job has ended; the exit status when the terminal hung up first, else None."""
        while self.pending:
            if self.interrupts.hung_up.is_set():
                return 128 + signal.SIGHUP
            if self.interrupts.cancel.is_set() and not self.cancel_sent:
                for job in self.pending:
                    self.connection.send({"type": "cancel", "job": job})
                self.cancel_sent = True
            frame = self.connection.receive(timeout=0.2)
            if frame is not None:
                self._take(*frame)
        return None

    def finish(self) -> int:
        """Say what went wrong, each thing once, and return the exit status."""
        self.progress.end_bar()
        for line in self.notes + self.failures:
            self.say(line)
        if self.interrupts.exit_status:
            return self.interrupts.exit_status
        if self.failures:
            return EXIT_FAILED if self.run_failed else EXIT_USAGE
        return EXIT_OK

    # --- what the server sends ------------------------------------------------------------

    def _take(self, message: dict[str, Any], payload: bytes) -> None:
        from tui.client.connection import ServerGone

        kind = message.get("type")
        if kind == "event":
            self._event(message, payload)
        elif kind == "log" and message.get("job") in self.pending:
            self.progress.line(f"{str(message.get('level')).upper()} {message.get('logger', 'server')}: "
                               f"{message.get('text')}")
        elif kind == "bye":  # each job's JobDone came first; this one came with jobs still open
            raise ServerGone(str(message.get("message") or "the sdtui server stopped"))

    def _event(self, message: dict[str, Any], payload: bytes) -> None:
        from tui.wire.events import decode_event

        job, event = message.get("job"), decode_event(message, payload)
        if job not in self.pending and not (job is None and isinstance(event, MODEL_EVENTS)):
            return
        if isinstance(event, ImageSaved):
            self._image_saved(job, event)
        elif isinstance(event, JobDone):
            self._job_done(job, event.ended, event.reason)
        elif isinstance(event, SHOWN) and not (isinstance(event, Cancelled) and not self.cancel_sent):
            self._about_the_model(event)
            self.progress(event)

    def _about_the_model(self, event) -> None:
        """Say which model the job uses: the loading lines do when it loads one; else, as it starts,
        one line says it is the one the server holds."""
        if isinstance(event, LoadStarted):
            self.model_said = True
        elif isinstance(event, Loaded):
            self.model = event.model
        elif isinstance(event, Started) and not self.model_said:
            self.model_said = True
            if self.model:
                self.progress.end_bar()
                self.say(f"using the server's loaded model, {self.model}")

    def _image_saved(self, job: int, saved: ImageSaved) -> None:
        from tui.text import visible

        # The progress line first, so the path never joins the bar on a terminal.
        self.progress.image_line(saved.index, saved.request.count, saved.seed, saved.timings.total_s,
                                 saved.timings.it_per_s)
        print(saved.path if not sys.stdout.isatty() else visible(saved.path), flush=True)
        self.saved.setdefault(self.place_of[job], []).append(saved.path)

    def _job_done(self, job: int, ended: str, reason: str) -> None:
        self.pending.remove(job)
        if ended == "done":
            return
        if ended == "refused":
            self._fail(reason or f"job {job} was refused", bad_input=True)
        elif ended == "failed":
            self._fail(reason or f"job {job} failed, and the server gave no reason")
        elif self.cancel_sent and ended == "dropped":
            self.notes.append(f"job {job} was cancelled before it started")
        elif self.cancel_sent and ended == "cancelled":
            return  # the progress said "cancelled after n image(s)"
        elif ended == "cancelled":
            self._fail(f"job {job} was cancelled from another sdtui client (the app, or its Escape key); "
                       "images finished before are saved")
        elif ended == "dropped":
            self._fail(f"job {job} was dropped from the queue by another sdtui client ({reason or 'no reason given'}); "
                       "it never started")
        else:
            self._fail(f"job {job} did not finish: {reason or 'the sdtui server stopped'}")

    def _fail(self, line: str, bad_input: bool = False) -> None:
        if line not in self.failures:  # the same missing LoRA in every prompt of a template: said once
            self.failures.append(line)
        self.run_failed = self.run_failed or not bad_input
