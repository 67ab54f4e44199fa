"""Shared set-up for the app tests: an isolated SDTUI_HOME, the demo model, and waiting on
conditions (never on fixed sleeps)."""

from __future__ import annotations

import time

from tui.config import Settings

FAST = dict(model="demo", steps=4, width=128, height=128, seed=7, preview_max_fps=0)


def make_app(inline: bool = True, engine=None, **overrides):
    """The app on the demo model. ``inline``: its server runs on a thread of the test process (the
    same socket and messages), with ``engine`` (a factory) when given, else the real one; without
    ``inline`` the app starts ``sdtui serve`` in the background, as a user's does."""
    from tui.client.app import SdtuiApp
    from tui.locations import locations
    from tui.server.host import in_process

    places = locations()
    host = in_process(places, engine) if inline else None
    return SdtuiApp(Settings(**{**FAST, **overrides}), places=places, host=host)


def make_recording_app(inline: bool = True, engine=None, **settings):
    """The app, keeping every notification in ``app.notified`` (toasts time out; this list does not)."""
    app = make_app(inline, engine, **settings)
    app.notified = []
    notify = app.notify

    def recording(message, *args, **kwargs):
        app.notified.append(message)
        return notify(message, *args, **kwargs)

    app.notify = recording
    return app


async def wait_for(pilot, predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
    await pilot.pause()


async def wait_connected(pilot, app) -> None:
    await wait_for(pilot, lambda: app.session.connected, what="the connection to the server")


async def wait_loaded(pilot, app) -> None:
    await wait_for(pilot, lambda: app.session.model is not None and not app.session.busy and not app.session.loading,
                   what="the model to load")


async def generate_each(pilot, app, prompts) -> None:
    """Generate one image per prompt through the app's prompt box, oldest first, and wait for all."""
    await wait_loaded(pilot, app)
    ended = app.session.jobs_ended
    for prompt in prompts:
        await type_prompt(pilot, prompt)
        await pilot.press("enter")
    # Every job's JobDone taken by the Session, and its messages handled by the screens.
    await wait_for(pilot, lambda: app.session.jobs_ended >= ended + len(prompts) and not app.session.busy
                   and app.session.waiting == 0, what="the images")
    await pilot.pause(0.2)


async def submit_prompt(pilot, app, prompt: str) -> None:
    """Once the model is loaded, type ``prompt`` into the prompt box and press Enter."""
    await wait_loaded(pilot, app)
    await type_prompt(pilot, prompt)
    await pilot.press("enter")


TYPED_KEYS = 24  # a longer prompt arrives as a paste of all but its last character, which is typed


async def type_prompt(pilot, text: str) -> None:
    prompt = pilot.app.main_screen.query_one("#prompt")
    prompt.value = ""
    prompt.focus()
    if len(text) > TYPED_KEYS:  # each key costs a frame; a paste is what a long prompt usually is
        prompt.insert_text_at_cursor(text[:-1])
        text = text[-1]
    await pilot.press(*text) if text else None


def plain(widget) -> str:
    """The text a Static shows, rendered as a terminal would (tables and all), without styles."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.file.getvalue()
