import pytest

from tui.config import ConfigError, Settings, load_settings, override, save_settings
from tui.locations import locations


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_file_means_defaults(tmp_path):
    assert load_settings(tmp_path / "none.toml") == Settings()


def test_values_from_the_file(tmp_path):
    path = write(tmp_path, 'model = "demo"\nsteps = 30\nguidance = 5\nseed = 42\nscheduler = "euler a"\n'
                           'attention_slicing = "on"\npreviews = false\npreview_max_fps = 2\n')
    settings = load_settings(path)
    assert (settings.model, settings.steps, settings.guidance, settings.seed) == ("demo", 30, 5.0, 42)
    assert settings.scheduler == "Euler a" and settings.attention_slicing == "on" and settings.previews is False


@pytest.mark.parametrize("text,words", [
    ("stepz = 3", "unknown key 'stepz'; known keys are model,"),
    ("steps = 0", "steps: 0 is outside 1..500"),
    ("width = 500", "width: 500 is not allowed; use a multiple of 8"),
    ('device = "gpu"', "device = 'gpu' is not allowed; use one of auto, mps, cuda, cpu"),
    ('attention_slicing = "yes"', "use one of auto, on, off"),
    ('previews = "yes"', "previews = 'yes' is not allowed; use true or false"),
    ("preview_max_fps = -1", "preview_max_fps = -1 is not allowed"),
    ('scheduler = "nope"', "scheduler: unknown 'nope'"),
    ("steps = [1, 2]", "steps = [1, 2] is not allowed"),
    ("steps = true", "steps = True is not allowed"),
    ("model = 3", "model = 3 is not allowed"),
    ("steps = ", "not valid TOML"),
])
def test_bad_file_is_one_line_naming_file_and_key(tmp_path, text, words):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ") and words in message and "\n" not in message


def test_flags_override_the_file_and_none_means_unset(tmp_path):
    settings = load_settings(write(tmp_path, "steps = 30\n"))
    merged = override(settings, {"steps": "12", "guidance": None, "model": "demo"})
    assert (merged.steps, merged.guidance, merged.model) == (12, 7.0, "demo")
    assert settings.steps == 30


def test_save_then_load_round_trip(tmp_path):
    settings = Settings(model='odd "name" \\ path', steps=33, seed=5, previews=False, negative_prompt="blurry\nugly",
                        preview_max_fps=2.5)
    path = tmp_path / "sub" / "config.toml"
    save_settings(settings, path)
    assert load_settings(path) == settings
    assert "guidance" not in path.read_text()  # defaults are not written


def test_sdtui_home_puts_everything_under_one_folder(sdtui_home):
    places = locations()
    for path in (places.config_file, places.history_db, places.outputs_dir, places.log_file):
        assert path.is_relative_to(sdtui_home)
