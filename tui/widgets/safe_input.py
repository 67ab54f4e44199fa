"""An Input that never sends a control character to the terminal.

Input draws its value as it is, so a prompt recalled from history, a model path from
config.toml or pasted text holding an ESC would reach the terminal raw: an OSC 52 could
set the clipboard, a CSI could move the cursor. SafeInput draws each control character
as one visible stand-in (C0 as its Unicode control picture such as ␛, others as �), one
cell for one character, so editing and the cursor work as usual while the value itself
stays exactly what was recalled.
"""

from __future__ import annotations

from rich.highlighter import Highlighter
from rich.text import Text
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
