"""sdtui bench: choosing the best trial, what counts as a change, and the command itself."""

import re

from tests.conftest import run_sdtui
from tui.config import Settings, load_settings
from tui.cli.tuning import Trial, best_of, plan_trials, recommendation, resolved_settings

GIB = 1024**3


def trial(name, slicing, dtype, it_per_s, peak, swap=0, error=""):
    return Trial(name, slicing, dtype, "Euler a", it_per_s, peak, swap, 1.0, error)


def test_the_fastest_wins_and_near_ties_go_to_the_smaller_footprint():
    trials = [trial("a", "off", "float16", 10.0, 6 * GIB), trial("b", "on", "float16", 9.8, 4 * GIB),
              trial("c", "off", "float32", 12.0, 9 * GIB, swap=2 * GIB), trial("d", "on", "float32", 1, 1, error="oom")]
    assert best_of(trials).name == "b"  # c swaps, d failed, b is within 3% of a with less memory


def test_only_what_differs_from_the_resolved_settings_is_recommended():
    on_cpu = resolved_settings(Settings(), "cpu", 16 * GIB)
    assert on_cpu == {"attention_slicing": "off", "dtype": "float32"}
    assert recommendation(trial("x", "off", "float32", 1, 1), on_cpu) == {}
    on_small_mac = resolved_settings(Settings(), "mps", 16 * GIB)
    assert on_small_mac == {"attention_slicing": "on", "dtype": "float16"}
    assert recommendation(trial("x", "off", "float16", 1, 1), on_small_mac) == {"attention_slicing": "off"}


def test_float16_is_tried_only_where_it_computes():
    assert {t.dtype for t in plan_trials(Settings(), "cpu")} == {"float32"}
    assert {t.dtype for t in plan_trials(Settings(), "mps")} == {"float16", "float32"}


def test_the_bench_command_prints_a_table_and_saves_on_request(tmp_path):
    home = tmp_path / "home"
    result = run_sdtui(["bench", "--demo", "--width", "64", "--height", "64", "--steps", "2", "--save",
                        "--attention-slicing", "on"], env_extra={"SDTUI_HOME": str(home)}, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.search(r"slicing off, float32 +[\d.]+ it/s +peak", result.stdout)
    assert re.search(r"slicing on, float32 +[\d.]+ it/s", result.stdout)
    assert any(line.startswith("fastest without swapping:") for line in lines)
    machine = next(line for line in (result.stdout + result.stderr).splitlines() if line.startswith("machine: "))
    assert "Linux" in machine and "torch " in machine
    saved = load_settings(home / "config.toml")
    recommended = [line for line in lines if line.startswith("recommended:")]
    if recommended:  # slicing was forced on, so off is recommended when it is faster here
        assert "saved to" in result.stdout and saved.attention_slicing in ("on", "off")
    bad = run_sdtui(["bench", "--demo", "--steps", "0"], env_extra={"SDTUI_HOME": str(home)})
    assert bad.returncode == 2 and "steps: 0 is outside" in bad.stderr
