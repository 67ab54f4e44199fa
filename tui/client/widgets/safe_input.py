"""An Input that never sends a control character to the terminal.

Input draws its value as it is, so a prompt recalled from history, a model path from
config.toml or pasted text holding an ESC would reach the terminal raw: an OSC 52 could
set the clipboard, a CSI could move the cursor. SafeInput draws each control character
as one visible stand-in (C0 as its Unicode control picture such as ␛, others as �), one
cell for one character, so editing and the cursor work as usual while the value itself
stays exactly what was recalled.

It also applies keys in the order they came. Textual inserts a printable key in the focused
Input at once but runs the Input's own bound keys (Backspace, Ctrl+U, arrows, Enter) only
after the key has bubbled up to the app, so keys arriving together, as they do over a slow
SSH link or from tmux, could apply out of order: Ctrl+U then "fox" left an empty field, and
a letter typed just after Enter joined the prompt being submitted (Textual issue #6605).
SafeInput runs its own bindings as the key reaches it, in order with the typing.
"""

from __future__ import annotations

from rich.highlighter import Highlighter
from rich.text import Text
from textual import events
from textual.widgets import Input

from tui.text import stand_in


class ControlPictures(Highlighter):
    def highlight(self, text: Text) -> None:
        plain = text.plain
        shown = "".join(stand_in(ch) for ch in plain)
        if shown == plain:
            return
        text.plain = shown
        for index, (before, after) in enumerate(zip(plain, shown)):
            if before != after:
                text.stylize("reverse", index, index + 1)


class SafeInput(Input):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("highlighter", ControlPictures())
        super().__init__(*args, **kwargs)

    async def _on_key(self, event: events.Key) -> None:
        """The field's own (non-priority) binding for this key, run now; Input's printable
        handling follows when there is none. Priority bindings ran before the key got here."""
        own = next((bindings for node, bindings in self.screen._binding_chain if node is self), None)
        for binding in own.key_to_bindings.get(event.key, ()) if own else ():
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()
                return
