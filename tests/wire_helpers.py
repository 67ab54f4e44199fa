"""Talking to a real sdtui server from a test, as a client does: queue a job, and read the events
that follow until the one a test waits for."""

import time

DEMO = {"model": "demo", "previews": True, "preview_max_fps": 0}


def submit(connection, prompt="a fox", options=DEMO, **fields):
    """Queue a small job; its number."""
    request = {"prompt": prompt, "steps": 4, "width": 64, "height": 64, "seed": 1, **fields}
    reply = connection.request({"type": "generate", "request": request, "options": options}, "queued")
    assert reply["type"] == "queued", reply
    return reply["job"]


def events_until(connection, kind, job=None, limit=30.0):
    """The event messages received until one of ``kind`` (for ``job``, when given), within ``limit`` s."""
    seen = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        frame = connection.receive(timeout=deadline - time.monotonic())
        if frame is None:
            break
        message = frame[0]
        if message.get("type") == "event":
            seen.append(message)
            if message["event"] == kind and (job is None or message.get("job") == job):
                return seen
    raise AssertionError(f"no {kind} for job {job} within {limit} s; saw {[m['event'] for m in seen]}")
