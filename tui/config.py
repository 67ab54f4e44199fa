"""Settings: built-in defaults, overridden by config.toml, overridden by command-line flags.

The file is TOML, read with tomllib (data only: it cannot run code) and checked
strictly: an unknown key or a bad value is one line naming the file, the key and what
is allowed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tui.engine.device import DEVICES, DTYPES, SWITCHES
from tui.engine.models import DEFAULT_MODEL
from tui.engine.request import InvalidRequest, validate_request
from tui.engine.schedulers import DEFAULT_SCHEDULER


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming file and key."""


@dataclass
class Settings:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    attention_slicing: str = "auto"
    warmup: str = "auto"
    previews: bool = True
    preview_interval: int = 1
    preview_max_fps: float = 4.0
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 7.0
    width: int = 512
    height: int = 512
    seed: int | str = "random"
    scheduler: str = DEFAULT_SCHEDULER
    count: int = 1
    outputs_dir: str = ""  # empty: the default outputs folder
    models_dir: str = ""  # empty: the default models folder
    family_defaults: bool = True  # switching model sets its family's size (and Turbo's steps and guidance)
    bell: bool = True
    graphics: str = "auto"  # how pictures are drawn: auto, kitty, iterm2, sixel or halfblock

    def models_folder(self, default: Path) -> Path:
        """The models folder (with its loras/ and embeddings/): the setting, else ``default``."""
        return Path(self.models_dir).expanduser().resolve() if self.models_dir else default

    def request_fields(self) -> dict[str, Any]:
        return {"negative_prompt": self.negative_prompt, "steps": self.steps, "guidance": self.guidance,
                "width": self.width, "height": self.height, "seed": self.seed, "scheduler": self.scheduler,
                "count": self.count}


GRAPHICS = ("auto", "kitty", "iterm2", "sixel", "halfblock")
CHOICES = {"device": DEVICES, "dtype": DTYPES, "attention_slicing": SWITCHES, "warmup": SWITCHES,
           "graphics": GRAPHICS}
_REQUEST_KEYS = ("negative_prompt", "steps", "guidance", "width", "height", "seed", "scheduler", "count")


def _check(key: str, value: Any, where: str) -> Any:
    """The value for ``key`` if it is allowed, else a ConfigError naming ``where`` (if any) and the key."""
    prefix = f"{where}: " if where else ""

    def bad(allowed: str) -> ConfigError:
        return ConfigError(f"{prefix}{key} = {value!r} is not allowed; {allowed}")

    if key in CHOICES:
        if value not in CHOICES[key]:
            raise bad(f"use one of {', '.join(CHOICES[key])}")
        return value
    if key in ("previews", "bell", "family_defaults"):
        if not isinstance(value, bool):
            raise bad("use true or false")
        return value
    if key == "preview_interval":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise bad("use a whole number of steps from 1 to 1000")
        return value
    if key == "preview_max_fps":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= 60:
            raise bad("use a number of previews per second from 0 (no limit) to 60")
        return float(value)
    if key in ("model", "outputs_dir", "models_dir"):
        if not isinstance(value, str) or (key == "model" and not value.strip()) or "\0" in value:
            raise bad("use a Hub id, a folder path or \"demo\"" if key == "model" else "use a folder path")
        return value
    if key in _REQUEST_KEYS:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad("use a plain value")
        try:
            checked = validate_request({"prompt": "x", key: value})
        except InvalidRequest as error:
            raise ConfigError(f"{prefix}{error.problems[0].message}") from None
        result = getattr(checked, key)
        return "random" if key == "seed" and result is None else result
    raise ConfigError(f"{prefix}unknown key {key!r}; known keys are {', '.join(f.name for f in fields(Settings))}")


def load_settings(path: Path) -> Settings:
    """Defaults overridden by the file at ``path`` (a missing file means defaults)."""
    settings = Settings()
    if not path.exists():
        return settings
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
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value != getattr(defaults, f.name):
            lines.append(f"{f.name} = {_toml_value(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temp.replace(path)
