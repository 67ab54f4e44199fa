"""VAE tiling: an engine setting written once (tui/engine/options.py) and decided per job from
the image's size and the device's memory."""

import logging

import pytest

from tui.config import ConfigError, Settings, load_settings, override, panel_fields
from tui.engine import Engine, EngineOptions, GenerationRequest
from tui.engine.device import GIB, choose_vae_tiling, vae_attention_bytes


def test_the_decoders_attention_grows_with_the_square_of_the_pixels():
    assert vae_attention_bytes(1024, 1024, 2) == 512 * 1024**2  # float16 SDXL: 0.5 GiB
    assert vae_attention_bytes(2048, 2048, 2) == 8 * GIB
    assert vae_attention_bytes(1024, 1024, 4) == 2 * vae_attention_bytes(1024, 1024, 2)


@pytest.mark.parametrize("memory_gib,size,dtype_bytes,tiled", [
    (16, (1024, 1024), 2, False),  # SDXL at its own size on a 16 GB Mac: 0.5 GiB
    (16, (2048, 2048), 2, True),  # 8 GiB of scores
    (8, (1536, 1536), 2, True),  # an SDXL hires fix on an 8 GB Mac: 2.5 GiB
    (16, (1536, 1536), 2, False),
    (16, (1536, 1536), 4, True),  # an upcast float32 VAE doubles it
    (80, (2048, 2048), 2, False),  # a large card
])
def test_auto_tiles_when_the_decode_would_take_over_a_quarter_of_the_memory(memory_gib, size, dtype_bytes, tiled):
    decision = choose_vae_tiling("auto", "mps", memory_gib * GIB, *size, dtype_bytes)
    assert decision.value is tiled
    assert decision.reason.startswith(f"auto: {'on' if tiled else 'off'}, {size[0]}x{size[1]} needs ")
    assert f"of {memory_gib} GiB on mps" in decision.reason


def test_the_user_decides_when_it_is_not_auto():
    assert choose_vae_tiling("on", "cuda", 80 * GIB, 512, 512, 2).value is True
    assert choose_vae_tiling("off", "mps", 8 * GIB, 2048, 2048, 2).value is False


def test_it_is_a_setting_everywhere_settings_are(tmp_path):
    """The one field gives a config.toml key with its check, a flag and a place in the panel."""
    config = tmp_path / "config.toml"
    config.write_text('vae_tiling = "on"\n')
    assert load_settings(config).vae_tiling == "on"
    with pytest.raises(ConfigError, match=r"vae_tiling = 'sometimes' is not allowed; use one of auto, on, off"):
        override(Settings(), {"vae_tiling": "sometimes"})
    assert "VAE tiling" in [f.metadata["label"] for f in panel_fields()]
    from tui.cli.main import build_parser

    args = build_parser().parse_args(["generate", "x", "--vae-tiling", "off"])
    assert args.vae_tiling == "off"
    from tui.client.session import Session
    from tui.locations import Locations

    session = Session(override(Settings(), {"vae_tiling": "off"}), Locations(tmp_path, tmp_path))
    try:
        assert session.engine_options()["vae_tiling"] == "off"  # it travels to the server with each job
    finally:
        session.history.close()


def test_the_engine_tiles_the_vae_of_the_job_and_says_so(caplog):
    engine = Engine(EngineOptions(model="demo", vae_tiling="on"))
    request = GenerationRequest("a fox", steps=2, width=64, height=64, seed=1)
    with caplog.at_level(logging.INFO, logger="tui.engine"):
        assert len(engine.generate(request)) == 1
    assert engine.pipe.vae.use_tiling is True
    assert "VAE tiling: on (set by the user)" in caplog.text
    engine.options = EngineOptions(model="demo", vae_tiling="auto")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tui.engine"):
        assert len(engine.generate(request)) == 1
    assert engine.pipe.vae.use_tiling is False  # 64x64 needs next to nothing
    assert "VAE tiling: off (auto: off, 64x64 needs 0.0 GiB" in caplog.text
