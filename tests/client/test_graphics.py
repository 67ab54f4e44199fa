"""Real pixels: the protocol encoders byte by byte, the choice of protocol, the reply filter, and
the installed app in a pseudo-terminal that answers (or does not answer) like kitty, iTerm2 or
a Sixel terminal."""

import base64
import io
import re
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image

from tests.bench.terminal import READY_MARK, TerminalSession, sdtui_script, session_env, write_config
from tests.scripted_engine import serving
from tui.client.terminal import split_replies
from tui.client.widgets.graphics import (CELL_SIZE_QUERY, DA1_QUERY, KITTY_CHUNK, KITTY_QUERY, XTVERSION_QUERY, Replies, choose_graphics,
                                  iterm2_image, kitty_image, read_replies, sixel_image, tmux_passthrough)


def picture(width=40, height=30) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 4 % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


# --- the choice ---------------------------------------------------------------------------

KITTY = "\x1b_Gi=31;OK\x1b\\"
DA1_PLAIN, DA1_SIXEL = "\x1b[?62;22c", "\x1b[?63;1;4;6c"


@pytest.mark.parametrize("replies,protocol", [
    ([], "halfblock"),  # nothing answered (yet): never send image bytes
    ([KITTY], "halfblock"),  # DA1 not in: the answers are not complete
    ([DA1_PLAIN], "halfblock"),
    ([KITTY, "\x1bP>|kitty(0.36.4)\x1b\\", DA1_PLAIN], "kitty"),
    (["\x1bP>|iTerm2 3.5.4\x1b\\", DA1_SIXEL], "iterm2"),
    (["\x1bP>|WezTerm 20240203\x1b\\", DA1_SIXEL], "iterm2"),
    ([DA1_SIXEL], "sixel"),
    (["\x1b_Gi=31;ENOTSUPPORTED:no\x1b\\", DA1_PLAIN], "halfblock"),
])
def test_auto_uses_a_protocol_only_when_the_terminal_said_so(replies, protocol):
    choice = choose_graphics("auto", read_replies(replies))
    assert choice.protocol == protocol and choice.reason and not choice.passthrough


def test_a_named_protocol_is_used_as_told_and_tmux_decides_inside_tmux():
    assert choose_graphics("sixel", None).protocol == "sixel"
    assert choose_graphics("halfblock", Replies(kitty=True, complete=True)).protocol == "halfblock"
    off = {"allow-passthrough": "off", "client_termtype": "kitty(0.36.4)", "client_termfeatures": "256,RGB"}
    choice = choose_graphics("auto", None, off)
    assert choice.protocol == "halfblock" and "allow-passthrough" in choice.reason
    on = {**off, "allow-passthrough": "on"}
    assert choose_graphics("auto", None, on) == choose_graphics("auto", None, on)
    assert (choose_graphics("auto", None, on).protocol, choose_graphics("auto", None, on).passthrough) == \
        ("kitty", True)
    iterm = {**on, "client_termtype": "iTerm2 3.5.4"}
    assert choose_graphics("auto", None, iterm).protocol == "iterm2"
    sixel = {**off, "client_termtype": "foot(1.18)", "client_termfeatures": "256,RGB,sixel"}
    assert (choose_graphics("auto", None, sixel).protocol, choose_graphics("auto", None, sixel).passthrough) == \
        ("sixel", False)
    assert choose_graphics("auto", None, {**on, "client_termtype": "xterm(390)"}).protocol == "halfblock"


def test_the_cell_size_answer_is_read_as_width_and_height():
    assert read_replies(["\x1b[6;18;9t", DA1_SIXEL]).cell == (9, 18)
    assert read_replies([DA1_SIXEL]).cell is None


# --- the encoders -------------------------------------------------------------------------

def test_kitty_sends_the_png_in_chunks_quietly_at_the_cell_size():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    sequence = kitty_image(image, 30, 10, image_id=77)
    commands = re.findall(r"\x1b_G([^;\x1b]*);?([^\x1b]*)\x1b\\", sequence)
    assert commands[0][0] == "a=d,d=I,i=77,q=2"  # the earlier image with this id goes first
    first = dict(pair.split("=") for pair in commands[1][0].split(","))
    assert first == {"a": "T", "f": "100", "i": "77", "c": "30", "r": "10", "C": "1", "q": "2", "m": "1"}
    assert all(len(payload) <= KITTY_CHUNK for _, payload in commands[1:])
    assert len(commands) > 3 and commands[-1][0] == "m=0,q=2"
    data = base64.b64decode("".join(payload for _, payload in commands[1:]))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(image))


def test_iterm2_sends_the_png_inline_with_its_size_in_cells():
    image = picture()
    sequence = iterm2_image(image, 12, 6)
    match = re.fullmatch(r"\x1b\]1337;File=([^:]*):([A-Za-z0-9+/=]*)\x07", sequence)
    arguments = dict(pair.split("=") for pair in match.group(1).split(";"))
    data = base64.b64decode(match.group(2))
    assert arguments == {"inline": "1", "size": str(len(data)), "width": "12", "height": "6",
                         "preserveAspectRatio": "1", "doNotMoveCursor": "1"}
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(image))


def decode_sixel(sequence: str) -> np.ndarray:
    """A small Sixel reader (colour registers, bands, repeats), independent of the encoder's code paths."""
    body = sequence[sequence.index("q") + 1:sequence.rindex("\x1b\\")]
    width, height = map(int, re.match(r'"1;1;(\d+);(\d+)', body).groups())
    body = re.sub(r'^"[\d;]*', "", body)
    out = np.zeros((height + 6, width, 3), dtype=np.int32)
    registers, colour, x, y = {}, (0, 0, 0), 0, 0
    for token in re.finditer(r"#(\d+);2;(\d+);(\d+);(\d+)|#(\d+)|!(\d+)(.)|([?-~])|(\$)|(-)", body):
        if token.group(1):
            registers[int(token.group(1))] = tuple(round(int(v) * 255 / 100) for v in token.group(2, 3, 4))
        elif token.group(5):
            colour = registers[int(token.group(5))]
        elif token.group(6) or token.group(8):
            count, char = (int(token.group(6)), token.group(7)) if token.group(6) else (1, token.group(8))
            bits = ord(char) - 63
            for _ in range(count):
                for row in range(6):
                    if bits >> row & 1:
                        out[y + row, x] = colour
                x += 1
        elif token.group(9):
            x = 0
        elif token.group(10):
            x, y = 0, y + 6
    return out[:height]


def test_sixel_draws_the_image_in_its_own_colours():
    image = picture(37, 25)  # neither a multiple of 6 tall nor of anything wide
    sequence = sixel_image(image)
    assert sequence.startswith('\x1bP0;1;0q"1;1;37;25') and sequence.endswith("\x1b\\")
    drawn = decode_sixel(sequence)
    error = np.abs(drawn - np.asarray(image, dtype=np.int32)).mean()
    assert error < 4, error  # 255 colours at 0-100 % steps: a few levels at most
    flat = Image.new("RGB", (200, 12), (200, 40, 40))
    assert "!200" in sixel_image(flat)  # runs are compressed


def test_tmux_passthrough_doubles_each_escape():
    wrapped = tmux_passthrough("\x1b_Ga=T;AAAA\x1b\\")
    assert wrapped == "\x1bPtmux;\x1b\x1b_Ga=T;AAAA\x1b\x1b\\\x1b\\"


def test_replies_are_taken_out_of_the_input_and_a_cut_one_is_held():
    replies, rest, held = split_replies("a" + KITTY + "b\x1b[A" + DA1_PLAIN, "")
    assert replies == [KITTY, DA1_PLAIN] and rest == "ab\x1b[A" and held == ""
    assert split_replies("\x1b", "") == ([], "", "\x1b")  # held briefly (see the pty test's Escape)
    assert split_replies("\x1b[A", "") == ([], "\x1b[A", "")
    replies, rest, held = split_replies("x\x1b[?62;2", "")
    assert (replies, rest, held) == ([], "x", "\x1b[?62;2")
    replies, rest, held = split_replies("2c", held)
    assert (replies, rest, held) == (["\x1b[?62;22c"], "", "")


# --- the app in a pseudo-terminal ----------------------------------------------------------

IMAGE_MARKS = {"kitty": b"\x1b_Ga=T,f=100", "iterm2": b"\x1b]1337;File=inline=1", "sixel": b"\x1bP0;1;0q"}
ANSWERS = {
    "none": {},
    "kitty": {KITTY_QUERY: KITTY, XTVERSION_QUERY: "\x1bP>|kitty(0.36.4)\x1b\\", DA1_QUERY: DA1_PLAIN},
    "iterm2": {XTVERSION_QUERY: "\x1bP>|iTerm2 3.5.4\x1b\\", DA1_QUERY: DA1_SIXEL},
    "sixel": {CELL_SIZE_QUERY: "\x1b[6;18;9t", DA1_QUERY: DA1_SIXEL},
}


@pytest.mark.parametrize("terminal", ["none", "kitty", "iterm2", "sixel"])
def test_the_app_draws_with_what_the_terminal_answered(tmp_path, terminal):
    """The app in a pty answers the terminal's replies; the server it finds running is the real one
    with a scripted engine, since the subject is what reaches the terminal."""
    home = tmp_path / "home"
    home.mkdir()
    write_config(home, model="demo", steps=2, width=128, height=128, seed=7)
    with serving(home):
        _draws_with_what_the_terminal_answered(home, terminal)
    log = next(home.rglob("sdtui.log")).read_text()
    expected = {"none": "pictures: half blocks (the terminal has not answered", "kitty": "pictures: kitty (",
                "iterm2": "pictures: iterm2 (the terminal is iTerm2 3.5.4", "sixel": "pictures: sixel ("}
    assert expected[terminal] in log, log[-2000:]


def assert_first_frame_is_whole(output: bytes) -> None:
    """The first frame that shows the picture's place also has the prompt box and the footer's
    keys: no half-drawn screen first (a frame starts where it moves the cursor home)."""
    frames = [frame for frame in output.split(b"\x1b[1;1H") if b"no image yet" in frame]
    assert frames, "no frame with the picture's place"
    for part in (b"Enter to generate", b"negative prompt", b"Quit", b"palette"):
        assert part in frames[0], f"{part!r} missing from the first frame"


def _draws_with_what_the_terminal_answered(home, terminal: str) -> None:
    session = TerminalSession([sdtui_script()], 100, 30, session_env(home))
    try:
        session.wait_for(DA1_QUERY.encode(), session.started, timeout=60)
        output = session.output_since(session.started)
        assert output.index(b"Enter to generate") < output.index(KITTY_QUERY.encode()), \
            "the queries come after the first frame"
        assert_first_frame_is_whole(output)
        answers = ANSWERS[terminal]
        # Answer in the order asked, cut in two reads, as a slow link might deliver them.
        reply = "".join(answers.get(q, "") for q in (KITTY_QUERY, XTVERSION_QUERY, CELL_SIZE_QUERY, DA1_QUERY))
        reply = reply.encode()
        session.send(reply[:len(reply) // 2])
        time.sleep(0.05)
        session.send(reply[len(reply) // 2:])
        session.wait_for(READY_MARK, session.started, timeout=120)
        typed = session.send(b"typed after the answers\r")
        deadline = time.monotonic() + 120
        while not (home / "history.db").exists() or not rows(home):
            assert time.monotonic() < deadline, "no image"
            time.sleep(0.1)
        time.sleep(6 if terminal == "none" else 1)  # past the query window when nothing answers
        assert rows(home) == [("typed after the answers", "done")], "an answer leaked into the prompt"
        output = session.output_since(typed)
        for protocol, mark in IMAGE_MARKS.items():
            if protocol == terminal:
                assert mark in output, f"no {protocol} image sent"
            else:
                assert mark not in output, f"{protocol} bytes sent to a terminal that did not say it shows them"
        if terminal == "none":
            assert b"\x1b_G" not in output and b"1337" not in output
    finally:
        session.close(stop_server=False)


def rows(home):
    with sqlite3.connect(f"file:{home / 'history.db'}?mode=ro", uri=True, timeout=1) as db:
        return db.execute("SELECT prompt, status FROM generations").fetchall()
