"""What the engine can be told, each option written once.

A field's metadata says what a user may give it (``choices``, a numeric ``low``..``high``,
``text``), how it is offered (``label`` in the app's settings panel, a command-line ``flag``
with its ``help``) and whether config.toml keeps it (``saved``). tui/config.py builds the
settings, the checks, the TOML keys, the flags and the panel's fields from these, and the
server accepts exactly these fields from a client: a new option is one field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui.engine.device import DEVICES, DTYPES, SWITCHES, TEXT_ENCODER_SETTINGS
from tui.engine.models import DEFAULT_MODEL
from tui.engine.nf4 import QUANTIZE


def option(default: Any, *, label: str = "", flag: str = "", help: str = "", metavar: str = "",
           choices: tuple[str, ...] = (), low: float | None = None, high: float | None = None,
           whole: bool = False, allowed: str = "", saved: bool = True, reload: bool = False, order: int = 0):
    """A dataclass field with what the settings derive from it.

    ``label``: shown in the settings panel (else not there), sorted by ``order``; ``flag``: the
    command-line flag (``help``, ``metavar``); ``choices`` or ``low``..``high`` (``whole``
    numbers): what is allowed, which ``allowed`` words for the error; ``saved``: config.toml
    may hold it; ``reload``: changing it reloads the model.
    """
    return field(default=default, metadata={
        "label": label, "flag": flag, "help": help, "metavar": metavar, "choices": choices, "low": low,
        "high": high, "whole": whole, "allowed": allowed, "saved": saved, "reload": reload, "order": order})


@dataclass
class EngineOptions:
    model: str = option(DEFAULT_MODEL, label="Model", order=90, reload=True, flag="--model", metavar="M",
                        help=f"Hub id or local diffusers folder (default: {DEFAULT_MODEL})",
                        allowed='use a Hub id, a folder path or "demo"')
    device: str = option("auto", label="Device", order=120, reload=True, flag="--device", choices=DEVICES,
                         help="where to run (auto: mps, else cuda, else cpu)")
    dtype: str = option("auto", label="Dtype", order=130, reload=True, flag="--dtype", choices=DTYPES,
                        help="weights precision (auto: float16 on a GPU, float32 on cpu)")
    quantize: str = option("none", label="Quantize", order=135, reload=True, flag="--quantize", choices=QUANTIZE,
                           help="quantize the weights to 4-bit NF4 as they load, with bitsandbytes (cuda, or mps "
                                "with bitsandbytes 0.50+): nf4 the transformer, nf4-encoders the text encoders too")
    attention_slicing: str = option("auto", label="Attn slicing", order=110, flag="--attention-slicing",
                                    choices=SWITCHES,
                                    help="compute attention in slices to save memory (auto: on for mps under 64 GB)")
    vae_tiling: str = option("auto", label="VAE tiling", order=115, flag="--vae-tiling", choices=SWITCHES,
                             help="decode the image in tiles to save memory (auto: on when the decode would take "
                                  "over a quarter of the memory)")
    text_encoders: str = option("auto", label="Text encoders", order=117, flag="--text-encoders",
                                choices=TEXT_ENCODER_SETTINGS,
                                help="free the text encoders while images denoise, to save memory (auto: when the "
                                     "weights and a job would not fit the device); re-rolls reuse the prompt's "
                                     "embeddings either way")
    warmup: str = option("auto", choices=SWITCHES)
    # Never kept in config.toml: a pickle can run code, so each run that wants one says so.
    allow_pickle: bool = option(False, saved=False, flag="--allow-pickle",
                                help="allow .ckpt/.bin/.pt weights, which can run code when loaded")
    previews: bool = option(True, label="Previews", order=140, help="live previews")
    preview_interval: int = option(1, low=1, high=1000, whole=True, allowed="use a whole number of steps from 1 to 1000")
    preview_max_fps: float = option(4.0, low=0, high=60,
                                    allowed="use a number of previews per second from 0 (no limit) to 60")
    models_dir: str = option("", allowed="use a folder path")  # where loras/ and embeddings/ are; empty: the default


def option_names() -> tuple[str, ...]:
    """The options a client may send with a job or a load."""
    from dataclasses import fields

    return tuple(f.name for f in fields(EngineOptions))
