"""Settings: built-in defaults, overridden by config.toml, overridden by command-line flags.

The file is TOML, read with tomllib (data only: it cannot run code) and checked
strictly: an unknown key or a bad value is one line naming the file, the key and what
is allowed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tui.engine.options import EngineOptions, option
from tui.engine.request import InvalidRequest, validate_request
from tui.engine.schedulers import DEFAULT_SCHEDULER, scheduler_names


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming file and key."""


GRAPHICS = ("auto", "kitty", "iterm2", "sixel", "halfblock")


@dataclass
class RequestDefaults:
    """What every new job starts with (the prompt aside)."""
    negative_prompt: str = option("", flag="--negative", metavar="TEXT", help="negative prompt")
    steps: int = option(20, label="Steps", order=10, flag="--steps", metavar="N")
    guidance: float = option(7.0, label="Guidance", order=20, flag="--guidance", metavar="G",
                             help="classifier-free guidance scale, 0..50")
    width: int = option(512, label="Width", order=40, flag="--width", metavar="W", help="multiple of 8, 64..2048")
    height: int = option(512, label="Height", order=50, flag="--height", metavar="H", help="multiple of 8, 64..2048")
    seed: int | str = option("random", label="Seed", order=60, flag="--seed", metavar="S",
                             help="0..18446744073709551615 (64-bit, as ComfyUI's), or 'random'")
    shift: float = option(0.0, label="Shift", order=101, flag="--shift", metavar="S",
                          help="flow-matching samplers' timestep shift, 0..20 (0: the model's own)")
    scheduler: str = option(DEFAULT_SCHEDULER, label="Scheduler", order=100, flag="--scheduler", metavar="NAME",
                            choices=tuple(scheduler_names()), help="e.g. 'Euler a', 'DPM++ 2M Karras', DDIM, UniPC")
    count: int = option(1, label="Images", order=70, flag="--count", metavar="N",
                        help="images to make, 1..100 (seeds S, S+1, ...)")


@dataclass
class AppSettings:
    """What only the app and its clients use."""
    outputs_dir: str = option("", allowed="use a folder path")  # empty: the default outputs folder
    family_defaults: bool = option(True)  # switching model sets its family's size (and Turbo's steps and guidance)
    bell: bool = option(True)
    graphics: str = option("auto", flag="--graphics", choices=GRAPHICS,
                           help="how the app draws pictures: real pixels through the Kitty, iTerm2 or Sixel "
                                "protocol, or half blocks (auto: a protocol the terminal says it shows, else half "
                                "blocks)")  # how pictures are drawn


@dataclass
class Settings(AppSettings, RequestDefaults, EngineOptions):
    """Every setting, each written once in the dataclass of its concern: the engine's options
    (tui/engine/options.py), the request defaults and the app's own. config.toml's keys, the
    checks, the command-line flags, the settings panel and what goes to the server are all
    derived from the fields and their metadata."""

    def models_folder(self, default: Path) -> Path:
        """The models folder (with its loras/ and embeddings/): the setting, else ``default``."""
        return Path(self.models_dir).expanduser().resolve() if self.models_dir else default

    def request_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(RequestDefaults)}

    def engine_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(EngineOptions)}


SAVED = {f.name: f for f in fields(Settings) if f.metadata.get("saved", True)}
_REQUEST_KEYS = tuple(f.name for f in fields(RequestDefaults))


def panel_fields() -> list:
    """The settings the panel shows, in its order (each field's label and what it allows)."""
    return sorted((f for f in fields(Settings) if f.metadata.get("label")), key=lambda f: f.metadata["order"])


def flag_fields(*concerns) -> list:
    """The fields of ``concerns`` (dataclasses) offered as command-line flags."""
    return [f for concern in concerns for f in fields(concern) if f.metadata.get("flag")]


def _check(key: str, value: Any, where: str) -> Any:
    """The value for ``key`` if it is allowed, else a ConfigError naming ``where`` (if any) and the key."""
    prefix = f"{where}: " if where else ""
    spec = SAVED.get(key)
    if spec is None:
        raise ConfigError(f"{prefix}unknown key {key!r}; known keys are {', '.join(SAVED)}")
    meta, default = spec.metadata, spec.default

    def bad(allowed: str) -> ConfigError:
        return ConfigError(f"{prefix}{key} = {value!r} is not allowed; {allowed}")

    if key in _REQUEST_KEYS:  # the request's own rules, as the engine applies them
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad("use a plain value")
        try:
            checked = validate_request({"prompt": "x", key: value})
        except InvalidRequest as error:
            raise ConfigError(f"{prefix}{error.problems[0].message}") from None
        result = getattr(checked, key)
        return "random" if key == "seed" and result is None else result
    if meta.get("choices"):
        if value not in meta["choices"]:
            raise bad(f"use one of {', '.join(meta['choices'])}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("use true or false")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, int if meta.get("whole") else (int, float)) \
                or not math.isfinite(value) or not meta["low"] <= value <= meta["high"]:
            raise bad(meta["allowed"])
        return value if meta.get("whole") else float(value)
    if not isinstance(value, str) or (key == "model" and not value.strip()) or "\0" in value:
        raise bad(meta.get("allowed") or "use text")
    return value


def load_settings(path: Path) -> Settings:
    """Defaults overridden by the file at ``path`` (a missing file means defaults)."""
    settings = Settings()
    if not path.exists():
        return settings
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; fix or delete the file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error}); fix or delete the file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    for key, value in data.items():
        setattr(settings, key, _check(key, value, str(path)))
    return settings


def configured_keys(path: Path) -> set[str]:
    """The keys ``path`` sets (after load_settings has accepted it), so defaults can tell
    what the user chose from what was merely not given."""
    import tomllib

    try:
        return set(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()


def override(settings: Settings, values: dict[str, Any], where: str = "") -> Settings:
    """A copy of ``settings`` with ``values`` (from flags or a form) checked and applied."""
    merged = Settings(**asdict(settings))
    for key, value in values.items():
        if value is not None:
            setattr(merged, key, _check(key, value, where))
    return merged


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    text = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)
    return f'"{text}"'


def save_settings(settings: Settings, path: Path) -> None:
    """Write every setting that differs from the default, atomically."""
    defaults = Settings()
    lines = ["# sdtui settings; delete a line to go back to its default"]
    for name in SAVED:
        value = getattr(settings, name)
        if value != getattr(defaults, name):
            lines.append(f"{name} = {_toml_value(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temp.replace(path)
