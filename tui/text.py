"""Showing untrusted text (prompts, file names, metadata, library messages) safely.

Rich markup is never interpreted because sdtui renders such text as ``rich.text.Text``,
never as markup. Terminal control characters are a second risk: an ESC in a prompt
could recolour, move the cursor, set the clipboard (OSC 52) or plant a link (OSC 8).
``visible()`` turns every control character, and the bidirectional overrides that can
reorder what is shown, into a printable escape such as ``\\x1b``.
"""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, keep_newlines: bool = False) -> str:
    out = []
    for ch in text:
        if ch == "\t" or (ch == "\n" and keep_newlines):
            out.append(ch)
        elif ch == "\n":
            out.append("⏎ ")
        elif unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def stand_in(ch: str) -> str:
    """``ch`` itself if it is safe to draw, else one visible character in its place: the
    Unicode control picture for C0 controls and DEL (ESC becomes ␛), � for the rest."""
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
        return "\ufffd"
    return ch


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when it was longer."""
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 job", "2 jobs"; ``many`` where adding an s is wrong ("1 entry", "3 entries")."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
