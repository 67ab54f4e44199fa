"""``sdtui generate`` as a client of the server: the job runs there, with the model the server
already holds; this process draws the progress, prints each saved path and imports no torch.
With ``--no-server`` the same client talks to a server of its own on a thread of this process,
which loads the model here; that is the only difference.

Ctrl-C or SIGTERM cancels this job (and only it) and waits for it to be recorded; a second
one leaves at once. SIGHUP (the terminal went away) leaves the job running: its image still
arrives in the history (with ``--no-server`` the job cannot outlive the command, so SIGHUP
cancels it as Ctrl-C does).

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
                        each: str = "prompt of the template", verbose: bool = False, own_server: bool = False) -> int:
    """Queue ``requests`` (one per prompt of a wildcard template), all at once, and follow them
    until each is done; with ``output``, several jobs' images are numbered (fox-1.png, fox-2.png).
    ``saved`` gets each request's saved paths, by its place in ``requests``. ``verbose``: the
    server's log lines about these jobs are printed too. ``own_server`` (``--no-server``): the
    server runs on a thread of this process (``OwnServer``), else it is the home's."""
    from tui.cli.progress import StderrProgress
    from tui.locations import locations
    from tui.client.connection import ServerGone

    places = locations()
    reach = OwnServer(places) if own_server else HomeServer(places, say, verbose)
    interrupts = Interrupts(hang_up_leaves=reach.shared)
    jobs = None
    try:
        try:
            connection = reach.connect()
        except Unreachable as error:
            say(str(error))
            return EXIT_FAILED
        jobs = _Jobs(connection, StderrProgress(), say, interrupts, saved if saved is not None else {})
        try:
            if connection.welcome.history_notice:  # reconciling the history changed it: said by its first client
                jobs.progress(Notice(connection.welcome.history_notice, "warning"))
            jobs.queue(requests, settings, options, output, chosen)
            if len(requests) > 1 and jobs.pending and reach.shared:
                say(f"queued {len(jobs.pending)} jobs, one for each {each}")
            hung_up = jobs.follow()
            if hung_up is not None:
                return hung_up  # the jobs go on without this client
        except ServerGone as error:
            jobs.progress.end_bar()
            say(reach.gone(error))
            return EXIT_FAILED
        finally:
            connection.close()
    finally:
        # After a second Ctrl-C (jobs still open) this command leaves at once.
        reach.close(wait_s=10.0 if jobs is not None and not jobs.pending else 0.0)
    return jobs.finish()


class Unreachable(Exception):
    """No server could be reached; the message says why, in one line."""


class HomeServer:
    """The sdtui server of this home, started in the background when none runs. Its queue is
    shared with every client, and its jobs outlive this command: a hang-up leaves them running."""
    shared = True

    def __init__(self, places, say: Callable[..., None], verbose: bool):
        self.places = places
        self.log = places.logs_dir / "server.log"
        self.say = say
        self.verbose = verbose

    def connect(self):
        from tui.client.connection import ServerGone, ServerRefused, connect_or_start

        try:
            return connect_or_start(self.places.data_dir, "generate", self.log, logs=self.verbose,
                                    on_start=lambda: self.say(f"starting the sdtui server (log: {self.log})"))
        except (ServerRefused, ServerGone, OSError) as error:
            raise Unreachable(str(error)) from None

    def gone(self, error: Exception) -> str:
        return (f"{error}; the job's images so far are in the history; {self.log} may say why; run the command "
                "again to start a new server")

    def close(self, wait_s: float) -> None:
        pass


class OwnServer:
    """``--no-server``: the server on a thread of this process (``stand_up``, as for the app's
    --no-server), so the model loads here. It listens on a socket of its own, never the home's,
    so it cannot meet an ``sdtui serve`` of this home, and the socket is removed as soon as this
    command is connected: nothing else can reach the server, and a kill leaves no socket behind.
    Its jobs end with the command, so a hang-up cancels them as Ctrl-C does. Its log lines are
    this process's own, already on stderr with --verbose."""
    shared = False

    def __init__(self, places):
        import os

        self.places = places
        self.socket_of = places.data_dir / f"generate-{os.getpid()}"  # only a name: it names the socket's folder
        self.host = None

    def connect(self):
        from tui.client.connection import ServerGone, ServerRefused, connect
        from tui.server.host import stand_up
        from tui.wire.place import PlaceError

        try:
            self.host = stand_up(self.places, keep_alive_s=-1, idle_exit_s=-1, socket_of=self.socket_of).start()
        except PlaceError as error:
            raise Unreachable(str(error)) from None
        except OSError as error:
            raise Unreachable(f"history: cannot open {self.places.history_db} ({error.strerror or error})") from None
        try:
            return connect(self.socket_of, "generate")
        except (ServerRefused, ServerGone, OSError) as error:
            raise Unreachable(str(error)) from None
        finally:
            self._remove_socket()

    def gone(self, error: Exception) -> str:
        return f"{error}; the job's images so far are in the history; {self.places.log_file} may say why"

    def close(self, wait_s: float) -> None:
        """Stop the server, waiting up to ``wait_s`` for its threads to end."""
        if self.host is not None:
            self.host.stop("the command ended", wait_s=wait_s)
        self._remove_socket()

    def _remove_socket(self) -> None:
        from tui.wire.place import pid_path, runtime_dir, socket_path

        for path in (socket_path(self.socket_of), pid_path(self.socket_of)):
            path.unlink(missing_ok=True)
        try:
            runtime_dir(self.socket_of).rmdir()
        except OSError:
            pass


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
        self.notices_said: set[str] = set()
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
            if isinstance(event, Notice):  # a family's defaults, told for each job of a template: said once
                if event.message in self.notices_said:
                    return
                self.notices_said.add(event.message)
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
