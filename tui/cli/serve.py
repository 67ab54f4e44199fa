"""``sdtui serve``, ``sdtui status`` and ``sdtui stop``."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time


class DurationError(ValueError):
    pass


def parse_duration(text: str, name: str) -> float:
    """Seconds from "600", "90s", "10m", "2h"; "-1" means never."""
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match:
        raise DurationError(f"{name}: {text!r} is not a duration; use seconds, or 90s, 10m, 2h, or -1 for never")
    value = float(match[1])
    if value < 0:
        return -1.0
    return value * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def add_commands(commands) -> None:
    serve = commands.add_parser("serve", help="run the engine as a local server (the app and generate use it)",
                                description="Hold the model, run the job queue and write the history for "
                                            "this sdtui home, on a private Unix socket. sdtui and sdtui "
                                            "generate start it in the background when none runs.")
    # As ollama: the model stays 10 minutes after the last job; the server leaves after an idle hour.
    serve.add_argument("--keep-alive", metavar="D", default=os.environ.get("SDTUI_KEEP_ALIVE", "10m"),
                       help="unload the model after D with nothing to do (0: at once, -1: never; default 10m)")
    serve.add_argument("--idle-exit", metavar="D", default=os.environ.get("SDTUI_IDLE_EXIT", "1h"),
                       help="leave after D with no client and nothing to do (-1: never; default 1h)")
    serve.add_argument("-v", "--verbose", action="store_true", help="also print log lines to stderr")
    commands.add_parser("status", help="show the server: model, memory, the running job and the queue")
    commands.add_parser("stop", help="stop the server (cancels the running job; the queue is dropped)")


def run_serve(args: argparse.Namespace, say) -> int:  # returns only on bad input; serving ends the process
    from tui.engine.device import enable_mps_fallback

    enable_mps_fallback()
    from tui.locations import locations
    from tui.logs import log_last_words_to_stderr, setup_logging
    from tui.server.host import stand_up
    from tui.server.server import ServerRunning
    from tui.wire.place import PlaceError

    try:
        keep_alive = parse_duration(args.keep_alive, "--keep-alive")
        idle_exit = parse_duration(args.idle_exit, "--idle-exit")
    except DurationError as error:
        say(str(error))
        return 2
    places = locations()
    setup_logging(places.log_file, verbose=args.verbose)
    if not args.verbose:  # verbose already prints every line there
        log_last_words_to_stderr()
    try:
        host = stand_up(places, keep_alive_s=keep_alive, idle_exit_s=idle_exit)
    except (ServerRunning, PlaceError) as error:
        say(str(error))
        return 1
    if host.server.history_notice:
        import logging

        logging.getLogger("tui.server").warning(host.server.history_notice)

    def stop_on(signum, _frame) -> None:
        host.stop(f"it got {signal.Signals(signum).name}")

    for name in ("SIGTERM", "SIGINT"):
        signal.signal(getattr(signal, name), stop_on)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a terminal that goes away ends clients, never the work
    host.serve()
    # Everything sdtui keeps is written by now: jobs ended and recorded, clients told, the history
    # closed, the socket and pid file gone. The interpreter's own teardown would still take 1.3 to
    # 2.5 s on a small machine (its last garbage collections walk everything torch, transformers and
    # diffusers made), so the process ends here, once its log is flushed.
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_status(say) -> int:
    from tui.locations import locations
    from tui.client.connection import NoServer, ServerRefused, connect, server_pid
    from tui.wire.events import decode_state

    places = locations()
    try:
        with connect(places.data_dir, "status") as connection:
            state = decode_state(connection.request({"type": "status"}, "status"))
    except NoServer:  # one line, and a status a script can test
        print(f"no sdtui server is running for {places.data_dir}")
        return 1
    except ServerRefused as error:
        say(f"{error} (server pid {server_pid(places.data_dir) or '?'})")
        return 1
    print(describe_state(state))
    return 0


PROMPT_SHOWN = 60  # characters of the running job's prompt that `sdtui status` shows


def describe_state(state) -> str:
    """``state``: the server's ServerState."""
    from tui.engine.memory import format_bytes

    loaded = f"{state.model} on {state.device} ({state.dtype})" if state.model else "none loaded"
    keep = state.keep_alive_s
    keep_text = "never unloads" if keep < 0 else f"unloads after {keep:g} s idle"
    waiting = state.waiting
    emptied = state.queue_emptied_at
    last = f"the queue last emptied at {time.strftime('%H:%M:%S', time.localtime(emptied))}" if emptied \
        else "no job has finished yet"
    busy = state.running is not None or bool(waiting) or state.loading
    now = "busy" if busy else f"idle {state.idle_s:.0f} s"
    up = time.time() - state.since
    lines = [
        f"sdtui server {state.sdtui}, pid {state.pid}, up {up:.0f} s",
        f"model: {loaded}; {keep_text}",
        f"memory: {format_bytes(state.rss)} process RSS",
        f"running: {describe_running(state)}",
        f"waiting: {len(waiting)}" + (f" ({_jobs(len(waiting))} {', '.join(map(str, waiting))})" if waiting else ""),
        f"finished: {state.finished_jobs} {_jobs(state.finished_jobs)}; {last}; {now}",
        f"clients: {max(0, state.clients - 1)} besides this one"
        + ("; keeping the Mac awake (caffeinate)" if state.keeping_awake else ""),
    ]
    return "\n".join(lines)


def _jobs(count: int) -> str:
    return "job" if count == 1 else "jobs"


def describe_running(state) -> str:
    """'job 3, step 12/20 (image 2/4): "a red fox in the snow..."', or what runs instead of a job."""
    from tui.text import clip, visible

    job = state.running
    if job is None:
        return "loading a model" if state.loading else "nothing"
    step = state.running_step
    where = f", step {step[0]}/{step[1]}" if step else ", starting"
    images = state.running_images or 1
    if step and images > 1:
        where += f" (image {state.running_image}/{images})"
    prompt = state.running_prompt
    said = f': "{visible(clip(prompt, PROMPT_SHOWN))}"' if prompt else ""
    return f"job {job}{where}{said}"


def run_stop(say) -> int:
    from tui.locations import locations
    from tui.client.connection import NoServer, ServerGone, ServerRefused, connect, server_pid

    places = locations()
    pid = server_pid(places.data_dir)
    try:
        with connect(places.data_dir, "stop") as connection:
            connection.request({"type": "stop"}, "stopping")
    except NoServer:
        print(f"no sdtui server is running for {places.data_dir}")
        return 0
    except (ServerRefused, ServerGone):  # another version's server: it is ours, so signal it
        if pid is None:
            say("the sdtui server did not answer and left no pid file")
            return 1
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if pid is not None and not _wait_gone(pid, 20.0):
        say(f"the sdtui server (pid {pid}) has not stopped after 20 s")
        return 1
    print("the sdtui server stopped")
    return 0


def _wait_gone(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ends within ``seconds`` (one that has ended but that its parent has
    not yet collected, a zombie, counts as ended)."""
    import psutil

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False
