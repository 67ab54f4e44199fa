"""A non-editable install must carry the stylesheets and the list of models to get: they ship inside the wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_contains_package_and_styles(tmp_path):
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("sdtui-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    styles = sorted(p.name for p in (ROOT / "styles").glob("*.tcss"))
    assert styles and all(f"tui/styles/{name}" in names for name in styles)
    assert "tui/engine/runner.py" in names and "tui/store/history.py" in names
    assert "tui/engine/known_models.toml" in names  # the models the picker offers to get
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sdtui = tui.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
