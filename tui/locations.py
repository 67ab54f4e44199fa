"""Every path sdtui reads or writes, in one place.

By default the platform's conventional folders are used (platformdirs). Setting
``SDTUI_HOME=DIR`` puts config, history, outputs and logs all under DIR, which is
what tests and portable installs want.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "sdtui"


@dataclass(frozen=True)
class Locations:
    config_dir: Path
    data_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def known_models_file(self) -> Path:
        """Models the picker offers to get, added to or replacing the built-in list."""
        return self.config_dir / "known_models.toml"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "history.db"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def models_dir(self) -> Path:
        """Where the model picker looks for diffusers folders and single-file checkpoints."""
        return self.data_dir / "models"

    @property
    def wildcards_dir(self) -> Path:
        """Where ``__name__`` in a prompt finds ``name.txt``, one choice a line."""
        return self.data_dir / "wildcards"

    @property
    def recent_models_file(self) -> Path:
        return self.data_dir / "recent_models.json"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "sdtui.log"


def locations() -> Locations:
    home = os.environ.get("SDTUI_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Locations(config_dir=root, data_dir=root)
    import platformdirs

    return Locations(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
    )


def styles_dir() -> Path:
    """The Textual CSS folder: inside the wheel when installed, beside the package in a checkout."""
    packaged = Path(__file__).parent / "styles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "styles"
