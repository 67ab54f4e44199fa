"""The settings panel: every generation and model setting, usable from the keyboard.

The panel keeps no settings of its own: it shows the Session's and hands it each change.
Each field is checked as it changes with the same rules as config.toml and the engine;
a bad value shows its one-line message under the field and never reaches the Session.
A change taken is announced with ``SettingsPanel.Changed``; model, device and dtype are
applied only when confirmed (Enter, or picking from a list), since they reload.
"""

from __future__ import annotations

import random

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from tui.client.family_fields import FamilyFields, fields_for
from tui.config import ConfigError, override, panel_fields
from tui.engine.request import RANDOM_SEED_MAX
from tui.client.widgets.safe_input import SafeInput
from tui.client.wording import clean_pasted_path

SIZE_PRESETS = ["512x512", "768x768", "1024x1024", "512x768", "768x512", "832x1216", "1216x832", "640x448"]
# The panel's fields come from the settings' own (tui/config.py): a field with a label is shown,
# as a switch (true or false), a list (choices) or a text field.
FIELDS = panel_fields()
FIELDS_BY_NAME = {f.name: f for f in FIELDS}
RELOAD_KEYS = tuple(f.name for f in FIELDS if f.metadata["reload"])
SWITCH_KEYS = tuple(f.name for f in FIELDS if isinstance(f.default, bool))
TEXT_KEYS = tuple(f.name for f in FIELDS if not f.metadata["choices"] and f.name not in SWITCH_KEYS)
# A panel that starts hidden makes its fields this long after mounting: after the first frame has
# reached the terminal (a callback after the first refresh still runs before it is written), and
# at once when F4 shows the panel sooner.
BUILD_AFTER_S = 0.5
STEP_KEYS = {"steps": 1, "guidance": 0.5}  # what F5 to F8 add or take away


def shown_value(value: object) -> str:
    """A field's text: 7.0 shows as "7", as the keys that change it write it."""
    return f"{value:g}" if isinstance(value, float) else str(value)


class SettingsPanel(VerticalScroll):
    DEFAULT_CSS = """
    SettingsPanel { width: 40; max-width: 45%; border-right: solid $primary-darken-2; padding: 0 1; }
    SettingsPanel.hidden { display: none; }
    SettingsPanel .row { height: auto; }
    SettingsPanel .name { width: 14; text-wrap: nowrap; }  /* "Distilled CFG" and a space */
    SettingsPanel Input { width: 1fr; }
    SettingsPanel Select { width: 1fr; }
    SettingsPanel .problem { color: $error; height: auto; padding: 0 0 0 13; display: none; }
    SettingsPanel .problem.shown { display: block; }
    SettingsPanel Checkbox { width: 1fr; }
    """

    class Changed(Message):
        """The Session took a change of ``key``; ``change`` (a SettingsChange) says what came of it."""

        def __init__(self, key: str, change) -> None:
            super().__init__()
            self.key, self.change = key, change

    def __init__(self, session, **kwargs) -> None:
        """``session``: the Session, whose ``settings`` the panel shows and changes."""
        super().__init__(**kwargs)
        self.session = session
        self.problems: dict[str, str] = {}
        self._built = False  # the fields are made (a hidden panel makes them after the first frame)
        self._building = False

    def compose(self) -> ComposeResult:
        if not self.has_class("hidden"):
            self._built = True
            yield from self._rows()

    def on_mount(self) -> None:
        # A panel that starts hidden (a narrow terminal) gets its fields after the first frame:
        # they are most of the screen's widgets, and nobody sees them before F4.
        if not self._built:
            self.set_timer(BUILD_AFTER_S, self.build)

    async def build(self) -> None:
        if self._built or self._building:
            return
        self._building = True  # while the fields mount: F4 then does not make a second set
        await self.mount_all(self._rows())
        self._built, self._building = True, False
        if not self.query("#setting-steps"):  # the app closed as the timer fired: nothing was mounted
            return
        self._fill(TEXT_KEYS + SWITCH_KEYS)  # a value set while the fields were being made (a key typed ahead)

    def _rows(self) -> list:
        s = self.session.settings
        size = f"{s.width}x{s.height}"
        rows = []

        def row(title: str, field) -> Horizontal:
            return Horizontal(Label(title, classes="name", id=f"name-{field.id}"), field, classes="row")

        family = fields_for(self.session.family)
        for spec in FIELDS:
            key, title, value = spec.name, spec.metadata["label"], getattr(s, spec.name)
            if key == "guidance":
                title = family.guidance_label
            if key == "width":
                rows.append(row("Size preset", Select([(p, p) for p in SIZE_PRESETS], prompt="custom",
                                                      value=size if size in SIZE_PRESETS else Select.NULL,
                                                      id="size-preset", compact=True)))
            if isinstance(spec.default, bool):
                field = Checkbox(spec.metadata["help"], value=value, id=f"setting-{key}", compact=True)
            elif spec.metadata["choices"]:
                choices = family.samplers if key == "scheduler" and value in family.samplers \
                    else spec.metadata["choices"]
                field = Select([(o, o) for o in choices], value=value, allow_blank=False,
                               id=f"setting-{key}", compact=True)
            else:
                field = SafeInput(shown_value(value), id=f"setting-{key}", select_on_focus=False, compact=True)
            rows.append(row(title, field))
            if key == "shift":
                rows[-1].display = family.shift  # flow-matching samplers only
            if key in TEXT_KEYS:
                rows.append(Static(id=f"problem-{key}", classes="problem"))
            if key == "seed":
                rows.append(row("", Checkbox("seed locked", value=s.seed != "random", id="seed-lock", compact=True)))
            if key == "model":
                rows.append(row("", Button("Browse models (F3)", id="browse-models", compact=True)))
        return rows

    # --- reading the fields ---------------------------------------------------------------

    def _apply(self, key: str, value: object) -> None:
        settings = self.session.settings
        try:
            updated = override(settings, {key: value})
        except ConfigError as error:
            self._say_problem(key, str(error))
            return
        self._say_problem(key, None)
        if getattr(updated, key) == getattr(settings, key) and key not in RELOAD_KEYS:
            return
        change = self.session.change_settings(updated, key, key in RELOAD_KEYS)
        self.post_message(self.Changed(key, change))

    def _say_problem(self, key: str, problem: str | None) -> None:
        """Show ``problem`` under the field of ``key`` (None: it has none)."""
        if problem is None:
            self.problems.pop(key, None)
        else:
            self.problems[key] = problem
        if key in TEXT_KEYS and self._built:
            line = self.query_one(f"#problem-{key}", Static)
            line.update(problem or "")
            line.set_class(problem is not None, "shown")

    @on(Input.Changed)
    def _text_changed(self, event: Input.Changed) -> None:
        key = (event.input.id or "").removeprefix("setting-")
        if key in TEXT_KEYS and key != "model":
            event.stop()
            if event.value != event.input.value:
                return  # stale: a field posts its first value on mounting, and _fill may have replaced it since
            self._apply(key, event.value)
            if key in ("width", "height"):
                self._sync_preset()
            if key == "seed":
                self._set_switch("seed-lock", self.session.settings.seed != "random")

    @on(Input.Submitted)
    def _text_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "setting-model":
            event.stop()
            model = clean_pasted_path(event.value)  # a dropped folder arrives quoted or escaped
            if model != event.value:
                event.input.value = model
            self._apply("model", model)

    @on(Select.Changed)
    def _choice_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != event.select.value:
            return  # stale, as in _text_changed
        if event.select.id == "size-preset":
            if isinstance(event.value, str):
                width, height = event.value.split("x")
                self.set_value("width", width)
                self.set_value("height", height)
            return
        key = (event.select.id or "").removeprefix("setting-")
        if event.value is not Select.NULL and getattr(self.session.settings, key) != event.value:
            self._apply(key, event.value)

    @on(Button.Pressed, "#browse-models")
    def _browse_models(self, event: Button.Pressed) -> None:
        event.stop()
        self.app.run_action("models")

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        if event.value != event.checkbox.value:
            return  # stale, as in _text_changed
        key = (event.checkbox.id or "").removeprefix("setting-")
        if key in SWITCH_KEYS:
            self._apply(key, event.value)
        elif event.checkbox.id == "seed-lock" and event.value == (self.session.settings.seed == "random"):
            self.toggle_seed_lock()

    # --- writing the fields (from keys and commands) --------------------------------------

    def set_value(self, key: str, value: object) -> None:
        """Show ``value`` in the field for ``key`` and apply it as if typed (before the fields are
        made, the Session takes it and the fields show it once made)."""
        if not self._built:
            self._apply(key, str(value) if key in TEXT_KEYS else bool(value) if key in SWITCH_KEYS else value)
        elif key in TEXT_KEYS:
            self.query_one(f"#setting-{key}", Input).value = str(value)
            self._apply(key, str(value))  # Input.Changed arrives later; apply now so callers see it
        elif key in SWITCH_KEYS:
            self._set_switch(f"setting-{key}", bool(value))
            self._apply(key, bool(value))
        else:
            self.query_one(f"#setting-{key}", Select).value = value
            self._apply(key, value)

    def use_family(self, family: FamilyFields) -> None:
        """Offer the loaded family's samplers and name its guidance as it does (the Session has
        already moved the sampler to one of them)."""
        if not self._built:
            return  # the fields are made from the Session's family
        scheduler, chosen = self.query_one("#setting-scheduler", Select), self.session.settings.scheduler
        samplers = family.samplers if chosen in family.samplers else FIELDS_BY_NAME["scheduler"].metadata["choices"]
        with scheduler.prevent(Select.Changed):
            scheduler.set_options([(o, o) for o in samplers])
            scheduler.value = chosen
        self.query_one("#name-setting-guidance", Label).update(family.guidance_label)
        self.query_one("#setting-guidance", Input).disabled = not family.takes_guidance
        shift = self.query_one("#setting-shift", Input)
        shift.parent.display = family.shift

    def show(self, keys) -> None:
        """Show the Session's values of ``keys`` in their fields, which the Session has already taken
        (a family's defaults, the model kept after a failed switch)."""
        for key in keys:
            self._say_problem(key, None)
        self._fill(keys)

    def _fill(self, keys) -> None:
        if not self._built:
            return
        settings = self.session.settings
        for key in keys:
            value = getattr(settings, key)
            if key in SWITCH_KEYS:
                self._set_switch(f"setting-{key}", value)
                continue
            field = self.query_one(f"#setting-{key}", Input if key in TEXT_KEYS else Select)
            shown = shown_value(value) if key in TEXT_KEYS else value
            if field.value != shown:
                with field.prevent(Input.Changed, Select.Changed):
                    field.value = shown
        self._sync_preset()
        self._set_switch("seed-lock", settings.seed != "random")

    def toggle_seed_lock(self) -> None:
        """Lock the seed of the image being made (else of the last one, else a new one), or unlock."""
        if self.session.settings.seed == "random":
            seed, whose = self.session.current_seed()
            seed = seed if seed is not None else random.randint(0, RANDOM_SEED_MAX)
            self.set_value("seed", seed)
            self.app.notify(f"Seed locked to {seed}" + (f" ({whose})." if whose else "."), timeout=2)
        else:
            self.set_value("seed", "random")
            self.app.notify("Seed unlocked: each job draws a random seed.", timeout=2)

    def reuse_seed(self) -> None:
        seed, whose = self.session.current_seed()
        if seed is None:
            self.app.notify("No image yet, so no seed to reuse.", timeout=2)
            return
        self.set_value("seed", seed)
        self.app.notify(f"Seed locked to {seed} ({whose}).", timeout=2)

    def adjust(self, key: str, direction: int) -> None:
        """One notch up or down of steps or guidance (F5 to F8), within what is allowed."""
        value = getattr(self.session.settings, key) + direction * STEP_KEYS[key]
        low, high = (1, 500) if key == "steps" else (0.0, 50.0)
        value = min(high, max(low, value))
        self.set_value(key, value if key == "steps" else f"{value:g}")
        if self.has_class("hidden"):  # else the field shows it
            edge = " (the most)" if value == high else " (the least)" if value == low else ""
            self.app.toast_slots.show(key, f"{key.capitalize()} {value:g}{edge} for the next job.")

    def _set_switch(self, checkbox_id: str, value: bool) -> None:
        checkbox = self.query_one(f"#{checkbox_id}", Checkbox)
        if checkbox.value != value:
            with checkbox.prevent(Checkbox.Changed):
                checkbox.value = value

    def _sync_preset(self) -> None:
        size = f"{self.session.settings.width}x{self.session.settings.height}"
        preset = self.query_one("#size-preset", Select)
        wanted = size if size in SIZE_PRESETS else Select.NULL
        if preset.value != wanted:
            with preset.prevent(Select.Changed):
                preset.value = wanted

    @property
    def valid(self) -> bool:
        return not self.problems
