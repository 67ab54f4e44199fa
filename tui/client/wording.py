"""What the interface says where the engine's messages give command-line advice.

The engine's errors are written for ``sdtui generate`` ("... or try the demo model with
--demo"); inside the app the same advice names the field, key or palette command instead.
Pasted paths are cleaned here too: a terminal's drag-and-drop pastes them quoted or with
backslash-escaped spaces.
"""

from __future__ import annotations

import shlex
from urllib.parse import unquote, urlparse

DEMO_COMMAND = 'the demo model (Ctrl+P, "model: use the demo model")'
# Longest phrases first: each is replaced once, in this order.
APP_WORDING = (
    ("give a local diffusers folder with --model PATH, or try the demo model with --demo",
     f"give a local diffusers folder in the Model field (F4) or pick one with F3, or use {DEMO_COMMAND}"),
    ("give --model PATH to a diffusers folder, or --demo",
     f"give a diffusers folder in the Model field (F4), or use {DEMO_COMMAND}"),
    ("a local folder (--model PATH) or --demo", f"a local folder, or {DEMO_COMMAND}"),
    ("a Hub id, or --demo", f"a Hub id, or {DEMO_COMMAND}"),
    ("pass --allow-pickle", "start sdtui with --allow-pickle"),
    ("use --device auto or cpu", "set device to auto or cpu in the settings (F4)"),
)


def in_app_wording(message: str) -> str:
    for cli, app in APP_WORDING:
        message = message.replace(cli, app)
    return message


def clean_pasted_path(text: str) -> str:
    """A path as typed or pasted: quotes, shell escapes (``my\\ image.png``), a ``file://`` URL
    and a leading ``~`` are undone; anything else is returned stripped, as it was."""
    text = text.strip()
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    elif any(ch in text for ch in "'\"\\"):
        try:
            parts = shlex.split(text)
        except ValueError:  # an unbalanced quote: keep the text
            parts = []
        if len(parts) == 1:
            text = parts[0]
    if text.startswith("~"):
        from pathlib import Path

        text = str(Path(text).expanduser())
    return text
