"""Pure parts of the engine: schedulers by name, preview throttling and colours, memory readings."""

import pytest
import torch

from tui.engine.memory import format_bytes, sample_memory, swap_growth_warning
from tui.engine.families import family_from_configs
from tui.engine.preview import LATENT_RGB, LatentPreviewer, PreviewThrottle
from tui.engine.schedulers import SCHEDULERS, build_scheduler, find_scheduler, scheduler_from_a1111

SD15_SCHEDULER_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                         "num_train_timesteps": 1000, "steps_offset": 1, "set_alpha_to_one": False,
                         "skip_prk_steps": True, "clip_sample": False}


@pytest.mark.parametrize("spec", SCHEDULERS, ids=lambda s: s.name)
def test_every_scheduler_builds_from_an_sd_config(spec):
    scheduler = build_scheduler(spec, SD15_SCHEDULER_CONFIG)
    assert type(scheduler).__name__ == spec.diffusers_class
    scheduler.set_timesteps(10)
    for key, value in spec.options.items():
        assert scheduler.config[key] == value


@pytest.mark.parametrize("name,expected", [
    ("euler a", "Euler a"), ("EULER", "Euler"), ("PLMS", "PNDM"), ("k_dpmpp_2m", "DPM++ 2M"),
    ("euler_ancestral", "Euler a"), (" UniPC ", "UniPC"), ("nope", None),
])
def test_scheduler_names_from_other_tools(name, expected):
    spec = find_scheduler(name)
    assert (spec.name if spec else None) == expected


def test_a1111_schedule_type_combines_with_the_sampler():
    assert scheduler_from_a1111("DPM++ 2M", "Karras").name == "DPM++ 2M Karras"
    assert scheduler_from_a1111("DPM++ 2M", "Automatic").name == "DPM++ 2M"  # no version: before 1.9
    assert scheduler_from_a1111("Euler a", "Karras") is None


def test_preview_throttle_interval_and_rate():
    every_third = PreviewThrottle(interval=3, max_fps=0)
    assert [i + 1 for i in range(9) if every_third.due(i, now=float(i))] == [3, 6, 9]
    four_per_second = PreviewThrottle(interval=1, max_fps=4)
    times = [0.0, 0.1, 0.2, 0.26, 0.4, 0.55, 0.6]
    assert [t for i, t in enumerate(times) if four_per_second.due(i, now=t)] == [0.0, 0.26, 0.55]


def test_latent_format_by_pipeline():
    assert family_from_configs({"_class_name": "StableDiffusionXLPipeline"}).latent_format == "sdxl"
    assert family_from_configs({"_class_name": "StableDiffusionPipeline"}).latent_format == "sd"
    assert LATENT_RGB["sd"]["factors"] != LATENT_RGB["sdxl"]["factors"]


def test_latent_preview_colours_follow_the_factors():
    latents = torch.zeros(1, 4, 2, 3)
    latents[0, 0] = 1.0  # only the first channel: RGB = (1 + factors[0]) * 127.5
    image = LatentPreviewer("sd").to_image(latents, 24, 16)
    assert image.size == (3, 2) and image.mode == "RGB"
    expected = tuple(int((1 + f) * 127.5) for f in LATENT_RGB["sd"]["factors"][0])
    assert all(abs(a - b) <= 1 for a, b in zip(image.getpixel((0, 0)), expected))
    xl = LatentPreviewer("sdxl").to_image(torch.zeros(1, 4, 1, 1), 8, 8).getpixel((0, 0))
    assert all(abs(a - int((1 + b) * 127.5)) <= 1 for a, b in zip(xl, LATENT_RGB["sdxl"]["bias"]))


def test_memory_sample_on_the_cpu():
    sample = sample_memory("cpu")
    assert sample.device_allocated is None and sample.device_limit is None
    assert 0 < sample.process_rss < sample.system_total and 0 < sample.system_used <= sample.system_total
    assert sample.swap_used >= 0


def test_swap_growth_warning_threshold():
    mb = 1024**2
    assert swap_growth_warning(100 * mb, 300 * mb) is None
    warning = swap_growth_warning(100 * mb, 1124 * mb)
    assert warning.startswith("swap grew by 1.0 GB during this job") and "attention slicing" in warning


@pytest.mark.parametrize("count,text", [(None, "n/a"), (512, "512 B"), (1536, "1.5 KB"), (5 * 1024**3, "5.0 GB")])
def test_format_bytes(count, text):
    assert format_bytes(count) == text


def test_columns_fit_the_width_and_leave_out_whole_columns():
    from tui.client.screens.history import CELL_PADDING, fit_columns

    for width in (40, 46, 70, 120, 200):
        columns = fit_columns(width)
        names = [name for name, _ in columns]
        assert names[:3] == ["mark", "time", "prompt"]
        if width >= 46:
            assert "seed" in names and dict(columns)["seed"] >= 10  # a 10-digit seed whole, never "19"
        assert sum(size + CELL_PADDING for _, size in columns) <= max(width, 46)
    assert [name for name, _ in fit_columns(200)] == ["mark", "time", "prompt", "seed", "steps", "size",
                                                      "scheduler", "model", "status", "duration"]



def test_log_lines_break_at_spaces_and_after_slashes_never_mid_name():
    from tui.client.widgets.log import INDENT, break_offsets

    text = ("14:38:31 image 1/1 saved: seed 7, 0.0 s, 55.32 it/s, "
            "/home/ann/.local/share/sdtui/outputs/2026-11-27/143831-7-red-fox.png")
    for width in (34, 45, 60, 80):
        offsets = break_offsets(text, width)
        bounds = [0, *offsets, len(text)]
        lines = [text[a:b] for a, b in zip(bounds, bounds[1:])]
        assert "".join(lines) == text
        assert len(lines[0].rstrip()) <= width
        assert all(len(line.rstrip()) + INDENT <= width for line in lines[1:])
        assert lines[-1].endswith("fox.png") and "143831-7-red-fox.png" in "".join(lines[-2:]), lines
        for line in lines[:-1]:
            assert line.endswith((" ", "/", "-")), lines  # every break at a space, after a slash or hyphen
    assert break_offsets("short line", 80) == []


def test_each_xterm_palette_colour_maps_to_itself():
    import numpy as np

    from tui.client.widgets.palette import palette_rgb, to_xterm256, xterm_palette

    palette = xterm_palette()
    assert palette.shape == (240, 3) and tuple(palette[0]) == (0, 0, 0) and tuple(palette[-1]) == (238, 238, 238)
    chosen = to_xterm256(palette[None, :, :])[0]
    # The 32-level lookup grid may land a cube colour on its twin grey (same RGB) or a neighbour a
    # few units away, never on a colour that looks different.
    assert np.abs(palette_rgb(chosen).astype(int) - palette.astype(int)).max() <= 12
    assert (chosen == np.arange(16, 256)).mean() > 0.9


def test_nearest_colours_beat_richs_rounding_and_dithering_mixes_neighbours():
    import numpy as np

    from tests.bench.colour import delta_e, rich_downgrade, soft_gradient
    from tui.client.widgets.palette import palette_rgb, to_xterm256

    pixels = np.asarray(soft_gradient(48))
    nearest = palette_rgb(to_xterm256(pixels))
    assert delta_e(pixels, nearest) < delta_e(pixels, rich_downgrade(pixels, "256"))
    dithered = palette_rgb(to_xterm256(pixels, dither=True))
    assert delta_e(pixels, dithered, blur=1.0) < delta_e(pixels, nearest, blur=1.0)
    flat = np.full((8, 8, 3), (120, 150, 100), dtype=np.uint8)  # between palette colours
    mixed = to_xterm256(flat, dither=True)
    assert len(np.unique(mixed)) >= 2
    single = np.abs(palette_rgb(to_xterm256(flat))[0, 0].astype(int) - (120, 150, 100)).max()
    assert np.abs(palette_rgb(mixed).reshape(-1, 3).mean(axis=0) - (120, 150, 100)).max() < single / 1.5
