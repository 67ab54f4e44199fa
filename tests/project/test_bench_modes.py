"""Every benchmark module keeps a smoke mode, which `.ci/run` runs (`python -m tests.bench --smoke`),
so a benchmark that hangs or crashes fails CI instead of rotting unnoticed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MODULES = sorted(p.stem for p in (ROOT / "tests" / "bench").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_every_benchmark_module_has_a_smoke_mode(module):
    name = "tests.bench" if module == "__main__" else f"tests.bench.{module}"
    done = subprocess.run([sys.executable, "-m", name, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--smoke" in done.stdout


def test_ci_runs_the_benchmark_smoke_mode():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"python -m tests\.bench --smoke", script)


def test_the_smoke_run_covers_every_benchmark_module():
    source = (ROOT / "tests" / "bench" / "__main__.py").read_text()
    smoke = source[source.index("def smoke("):source.index("def print_targets(")]
    for module in MODULES:
        if module != "__main__":
            assert f"{module}.run(" in smoke, f"python -m tests.bench --smoke does not run {module}"
