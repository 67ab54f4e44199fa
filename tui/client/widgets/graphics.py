"""Real pixels in terminals that can show them: the Kitty graphics protocol, iTerm2 inline
images and Sixel, and which of them to use.

The encoders are small and written here (the protocols are a few lines each; the maintained
library, textual-image, asks the terminal at import time, before the first frame, which a
slow SSH link turns into a visible delay, and it has neither iTerm2 images nor tmux
passthrough). Choosing a protocol is a pure function of facts: the ``graphics`` setting,
what the terminal answered, and, inside tmux, what tmux knows of the terminal outside it.

Protocol references: https://sw.kovidgoyal.net/kitty/graphics-protocol/ ;
https://iterm2.com/documentation-images.html ; VT330/340 Sixel (DEC STD 070);
tmux passthrough: the ``allow-passthrough`` option (tmux 3.3+), ``man tmux``.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

PROTOCOLS = ("kitty", "iterm2", "sixel")
KITTY_CHUNK = 4096  # base64 bytes per APC chunk, the protocol's limit

# Sent once after the first frame: a Kitty graphics query (answered only by terminals that
# speak it), XTVERSION (the terminal's name and version), then DA1, which every terminal
# answers, last: once its reply is in, every answer that is coming has come.
KITTY_QUERY = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"
XTVERSION_QUERY = "\x1b[>0q"
CELL_SIZE_QUERY = "\x1b[16t"  # XTWINOPS: a cell's size in pixels (Sixel images are drawn in pixels)
DA1_QUERY = "\x1b[c"
QUERIES = KITTY_QUERY + XTVERSION_QUERY + CELL_SIZE_QUERY + DA1_QUERY

REPLY = re.compile(r"\x1b_G[^\x1b]*\x1b\\|\x1bP>\|[^\x1b]*\x1b\\|\x1b\[\?[0-9;]*c|\x1b\[6;[0-9]+;[0-9]+t")
# What a reply may have begun as, when a read ends in the middle of one.
REPLY_PREFIXES = ("\x1b_G", "\x1bP>|", "\x1b[?", "\x1b[6;")

# Terminals whose name (XTVERSION, or tmux's client_termtype) says they draw iTerm2 inline images.
ITERM2_NAMES = ("iterm2", "wezterm")


@dataclass(frozen=True)
class Replies:
    """What the terminal answered to QUERIES."""

    kitty: bool = False  # "OK" to the graphics query
    name: str = ""  # XTVERSION, e.g. "iTerm2 3.5.4" or "kitty(0.36.4)"
    sixel: bool = False  # DA1 lists attribute 4
    complete: bool = False  # DA1 came, so nothing more is coming
    cell: tuple[int, int] | None = None  # a cell's width and height in pixels


def read_replies(replies: list[str]) -> Replies:
    kitty = any(r.startswith("\x1b_G") and r.rstrip("\x1b\\").endswith(";OK") for r in replies)
    names = [r[len("\x1bP>|"):-2] for r in replies if r.startswith("\x1bP>|")]
    da1 = [r for r in replies if r.startswith("\x1b[?")]
    sixel = any("4" in r[3:-1].split(";") for r in da1)
    sizes = [tuple(int(v) for v in r[4:-1].split(";")) for r in replies if r.startswith("\x1b[6;")]
    cell = (sizes[0][1], sizes[0][0]) if sizes and min(sizes[0]) > 0 else None
    return Replies(kitty, names[0] if names else "", sixel, bool(da1), cell)


@dataclass(frozen=True)
class Choice:
    protocol: str  # one of PROTOCOLS, or "halfblock"
    reason: str
    passthrough: bool = False  # wrap every sequence for tmux
    warning: str = ""  # a named protocol that may not show: why, and what to do


# Terminal multiplexers, by the variable each sets in the shells it runs.
MULTIPLEXERS = (("TMUX", "tmux"), ("STY", "GNU screen"), ("ZELLIJ", "Zellij"))


def multiplexer(environ) -> str | None:
    """The terminal multiplexer the app runs inside, if any."""
    return next((name for variable, name in MULTIPLEXERS if environ.get(variable)), None)


def choose_graphics(setting: str, replies: Replies | None, tmux: dict[str, str] | None = None,
                    inside: str | None = None) -> Choice:
    """The protocol to draw pictures with.

    ``setting`` is the ``graphics`` setting; a named protocol is used as told, with a warning
    where the facts speak against it (``forced_warning``). ``auto`` uses one only when the
    terminal said it understands it: outside tmux, ``replies`` to QUERIES; inside tmux
    (``tmux`` holds ``allow-passthrough``, ``client_termtype`` and ``client_termfeatures``)
    what tmux learned from the terminal outside it. Unsure means half blocks. ``inside`` names
    the multiplexer (``multiplexer``), tmux when ``tmux`` is given.
    """
    if setting == "halfblock":
        return Choice("halfblock", "set to halfblock")
    if setting in PROTOCOLS:
        passthrough = tmux is not None and setting != "sixel" and tmux.get("allow-passthrough") in ("on", "all")
        inside = "tmux" if tmux is not None else inside
        return Choice(setting, "set to " + setting, passthrough, forced_warning(setting, replies, inside, tmux))
    if tmux is not None:
        return _choose_in_tmux(tmux)
    if replies is None or not replies.complete:
        return Choice("halfblock", "the terminal has not answered the graphics queries")
    if replies.kitty:
        return Choice("kitty", "the terminal answered the Kitty graphics query")
    if any(name in replies.name.lower() for name in ITERM2_NAMES):
        return Choice("iterm2", f"the terminal is {replies.name}, which shows iTerm2 inline images")
    if replies.sixel:
        return Choice("sixel", "the terminal lists Sixel in its device attributes")
    return Choice("halfblock", "the terminal answered, but named no image protocol")


def _choose_in_tmux(tmux: dict[str, str]) -> Choice:
    outer = tmux.get("client_termtype", "")
    features = tmux.get("client_termfeatures", "").split(",")
    if "sixel" in features:  # tmux draws Sixel itself when built with it and the terminal has it
        return Choice("sixel", f"tmux draws Sixel for {outer or 'this terminal'}")
    if tmux.get("allow-passthrough") not in ("on", "all"):
        return Choice("halfblock", "inside tmux without allow-passthrough (set -g allow-passthrough on)")
    lowered = outer.lower()
    if "kitty" in lowered or "ghostty" in lowered:
        return Choice("kitty", f"tmux passes images through to {outer}", passthrough=True)
    if any(name in lowered for name in ITERM2_NAMES):
        return Choice("iterm2", f"tmux passes images through to {outer}", passthrough=True)
    return Choice("halfblock", f"inside tmux, and tmux names no image protocol for {outer or 'the terminal'}")


def forced_warning(setting: str, replies: Replies | None, inside: str | None,
                   tmux: dict[str, str] | None = None) -> str:
    """One line for the log when the protocol named by the ``graphics`` setting may draw nothing:
    what the terminal (inside a multiplexer, the multiplexer) answered against it, or, without a
    plain answer, what the multiplexer needs. Empty when nothing speaks against it.

    ``replies`` are the answers to QUERIES, None when none were asked or none came; ``inside``
    the multiplexer (``multiplexer``); ``tmux`` what tmux knows (as for ``choose_graphics``).
    Inside tmux it is tmux that answers: its device attributes list Sixel only when it was
    built with it, and the Kitty query never reaches the terminal outside.
    """
    if setting not in PROTOCOLS:
        return ""
    lead = f"graphics: {setting}, as asked"
    fix = "if the stage stays blank, use --graphics auto or halfblock"
    answered = replies is not None and replies.complete
    who = (replies.name if answered and replies.name else None) or inside or "the terminal"
    if setting == "sixel" and answered and not replies.sixel:
        built = " (tmux draws Sixel only when built with it, 3.4 or newer)" if inside == "tmux" else ""
        return f"{lead}, but {who} answered that it cannot draw Sixel{built} — {fix}"
    if setting == "kitty" and answered and not replies.kitty and inside is None:
        return f"{lead}, but the terminal did not answer the Kitty graphics query, as terminals that draw Kitty " \
               f"images do — {fix}"
    if inside == "tmux":
        facts = tmux or {}
        if setting == "sixel" and answered:  # tmux can draw Sixel: it needs the terminal outside to have it
            if facts and "sixel" not in facts.get("client_termfeatures", "").split(","):
                outer = facts.get("client_termtype") or "the terminal outside it"
                return f"{lead}; tmux can draw Sixel, but {outer} outside it did not list Sixel when tmux asked — {fix}"
            return ""
        if setting == "sixel":
            return f"{lead}; inside tmux, Sixel shows only when tmux was built with it (3.4 or newer) — {fix}"
        if facts.get("allow-passthrough") not in ("on", "all"):
            name = "Kitty" if setting == "kitty" else "iTerm2"
            return f"{lead}; inside tmux, {name} images reach the terminal only with allow-passthrough on " \
                   f"(tmux set -g allow-passthrough on) — {fix}"
        return ""
    if inside is not None and not (setting == "sixel" and answered):
        return f"{lead}; inside {inside}, its pictures may not reach the terminal — {fix}"
    return ""


def tmux_passthrough(sequence: str) -> str:
    """``sequence`` wrapped so tmux hands it to the terminal outside (its ESCs doubled)."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def done_notification(title: str, body: str, in_tmux: bool) -> str:
    """A desktop notification, in the three forms terminals take: OSC 9 (iTerm2, WezTerm, Ghostty,
    Windows Terminal), OSC 777 (foot, urxvt, Ghostty, VTE) and kitty's OSC 99; a terminal ignores
    the forms it does not know. Inside tmux each goes through passthrough (``allow-passthrough
    on``); tmux passes the bell on by itself."""
    clean = [re.sub(r"[\x00-\x1f\x7f;]", " ", text) for text in (title, body)]
    sequences = [f"\x1b]9;{clean[0]}: {clean[1]}\x07", f"\x1b]777;notify;{clean[0]};{clean[1]}\x07",
                 f"\x1b]99;;{clean[0]}: {clean[1]}\x1b\\"]
    return "".join(tmux_passthrough(s) if in_tmux else s for s in sequences)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)  # speed over size: it is sent once
    return buffer.getvalue()


def kitty_image(image, columns: int, rows: int, image_id: int) -> str:
    """Transmit and show ``image`` scaled to ``columns`` x ``rows`` cells at the cursor, replacing
    any earlier image with the same id; quiet (q=2), and the cursor stays where it is (C=1)."""
    data = base64.standard_b64encode(png_bytes(image)).decode("ascii")
    chunks = [data[i:i + KITTY_CHUNK] for i in range(0, len(data), KITTY_CHUNK)] or [""]
    parts = [kitty_delete(image_id)]
    for index, chunk in enumerate(chunks):
        more = 1 if index < len(chunks) - 1 else 0
        if index == 0:
            keys = f"a=T,f=100,i={image_id},c={columns},r={rows},C=1,q=2,m={more}"
        else:
            keys = f"m={more},q=2"
        parts.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(parts)


def kitty_delete(image_id: int) -> str:
    """Remove image ``image_id`` and its placements (a picture that is no longer on screen)."""
    return f"\x1b_Ga=d,d=I,i={image_id},q=2\x1b\\"


def iterm2_image(image, columns: int, rows: int) -> str:
    data = png_bytes(image)
    encoded = base64.standard_b64encode(data).decode("ascii")
    return (f"\x1b]1337;File=inline=1;size={len(data)};width={columns};height={rows};"
            f"preserveAspectRatio=1;doNotMoveCursor=1:{encoded}\x07")


def sixel_image(image, size: tuple[int, int] | None = None) -> str:
    """``image`` as Sixel at its own pixel size, or enlarged to ``size`` by nearest neighbour
    after its colours are chosen (a preview filling its cells, since Sixel cannot scale): up to
    255 colours (Pillow's median cut), one six-pixel band at a time, runs of a colour
    compressed with ``!``. The work goes by runs of equal columns, so an enlarged picture costs
    about what its own pixels do, not what it covers."""
    import numpy as np
    from PIL import Image

    quantised = image.convert("RGB").quantize(colors=255, method=0, dither=0)
    if size is not None and size != quantised.size:
        quantised = quantised.resize(size, Image.Resampling.NEAREST)
    palette = quantised.getpalette()[:3 * 256]
    pixels = np.asarray(quantised)
    height, width = pixels.shape
    out = [f'\x1bP0;1;0q"1;1;{width};{height}']
    for index in np.unique(pixels).tolist():
        r, g, b = palette[3 * index:3 * index + 3]
        out.append(f"#{index};2;{r * 100 // 255};{g * 100 // 255};{b * 100 // 255}")
    for top in range(0, height, 6):
        out.append(_sixel_band(pixels[top:top + 6]) + "-")
    out.append("\x1b\\")
    return "".join(out)


_SIXEL_CHARS = [chr(63 + bits) for bits in range(64)]


def _sixel_band(band) -> str:
    """Up to six rows of colour indices as Sixel: a line per colour, ``$`` between them."""
    import numpy as np

    rows, width = band.shape
    # A column equal to the one on its left joins its run, so columns repeated by an
    # enlargement are worked on once.
    changes = np.concatenate(([True], (band[:, 1:] != band[:, :-1]).any(axis=0)))
    starts = np.flatnonzero(changes)
    widths = np.diff(np.append(starts, width))
    colours, rank = np.unique(band[:, starts], return_inverse=True)
    rank = rank.reshape(rows, len(starts))
    bits = np.zeros((len(colours), len(starts)), dtype=np.uint8)  # a sixel per colour and column
    for row in range(rows):
        bits[rank[row], np.arange(len(starts))] |= 1 << row
    flat = bits.ravel()
    begins = np.ones(flat.size, dtype=bool)
    begins[1:] = flat[1:] != flat[:-1]
    begins[::len(starts)] = True  # each colour's line starts a run
    run_starts = np.flatnonzero(begins)
    lengths = np.add.reduceat(np.tile(widths, len(colours)), run_starts)
    values = flat[run_starts]
    line = run_starts // len(starts)
    last = np.append(line[1:] != line[:-1], True)
    keep = ~(last & (values == 0))  # a line ends at its colour's last sixel
    chars = [_SIXEL_CHARS[value] for value in values[keep].tolist()]
    tokens = [char * length if length < 4 else f"!{length}{char}"
              for char, length in zip(chars, lengths[keep].tolist())]
    bounds = np.searchsorted(line[keep], np.arange(len(colours) + 1)).tolist()
    return "$".join(f"#{colour}" + "".join(tokens[begin:end])
                    for colour, begin, end in zip(colours.tolist(), bounds, bounds[1:]))


def cell_pixels() -> tuple[int, int]:
    """Pixels per cell (width, height) from the terminal's window size report (TIOCGWINSZ, which
    sshd passes on from the client), or 10x20, a common size, when it gives none."""
    import fcntl
    import struct
    import sys
    import termios

    try:
        rows, columns, width, height = struct.unpack(
            "HHHH", fcntl.ioctl(sys.__stdout__.fileno(), termios.TIOCGWINSZ, b"\0" * 8))
    except (OSError, AttributeError, ValueError):
        return 10, 20
    if not (rows and columns and width and height):
        return 10, 20
    return max(1, width // columns), max(1, height // rows)
