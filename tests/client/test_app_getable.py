"""The picker's models to get: below those on disk, judged for this machine with their download size,
hidden once in the cache, found by typing; Enter on one downloads it (from a Hub on 127.0.0.1) and loads
it: a repository, or a GGUF file with the base repository it loads with."""

import re

import pytest
from textual.widgets import DataTable, Input

from tests.app_helpers import make_app, wait_for, wait_loaded
from tests.client.test_app_models import open_picker
from tests.conftest import hub_online
from tests.fake_hub import FakeHub
from tests.tiny_gguf import z_image_hub_repositories
from tests.tiny_models import hub_cache_with
from tui.client.screens.models import TO_GET
from tui.client.widgets.status import StatusPanel

pytestmark = pytest.mark.asyncio

MINE = """
[[model]]
repo = "someone/tiny-sd"
label = "Tiny SD to get"
family = "sd1"
licence = "MIT"
parameters = { unet = 2_000_000, text_encoder = 1_000_000, vae = 500_000 }

[[model]]
repo = "someone/tiny-here"
label = "Tiny SD already here"
family = "sd1"
licence = "MIT"
parameters = { unet = 2_000_000, text_encoder = 1_000_000, vae = 500_000 }

[[model]]
repo = "someone/z-image-gguf"
file = "z_image_turbo-Q8_0.gguf"
base = "Tongyi-MAI/Z-Image-Turbo"
quantization = "Q8_0"
label = "Tiny Z-Image Q8_0"
family = "zimage"
variant = "turbo"
licence = "MIT"
parameters = { transformer = 200_000 }
"""
GGUF = "someone/z-image-gguf/z_image_turbo-Q8_0.gguf"


def rows(picker) -> list[tuple[str, ...]]:
    table = picker.query_one(DataTable)
    return [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]


async def test_models_to_get_are_listed_judged_and_one_downloads_when_chosen(sdtui_home, hub_cache, tiny_pipeline_dir,
                                                                            monkeypatch, tmp_path):
    pytest.importorskip("gguf")
    gguf_repository, base = z_image_hub_repositories(tmp_path / "repositories", GGUF.rsplit("/", 1)[1])
    sdtui_home.mkdir(parents=True, exist_ok=True)
    (sdtui_home / "known_models.toml").write_text(MINE, encoding="utf-8")
    hub_cache_with(hub_cache, tiny_pipeline_dir, "someone/tiny-here")
    hub_online(monkeypatch)
    with FakeHub() as hub:
        hub.add_folder("someone/tiny-sd", tiny_pipeline_dir)
        hub.add_folder("someone/z-image-gguf", gguf_repository)
        hub.add_folder("Tongyi-MAI/Z-Image-Turbo", base)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_loaded(pilot, app)
            picker = await open_picker(pilot, app)
            listed = rows(picker)
            names = [row[1] for row in listed]
            heading = names.index(TO_GET)
            assert "someone/tiny-here" in names[:heading]  # on disk, so not offered again
            assert "Tiny SD already here" not in names
            to_get = {row[1]: row for row in listed[heading + 1:]}
            assert len(to_get) > 25
            mine = to_get["Tiny SD to get"]
            assert mine[0] == "↓" and re.fullmatch(r"fits [0-9.]+/[0-9.]+ GB", mine[2]), mine
            assert mine[3] == "6.7 MB" and mine[4] == "SD 1.x" and mine[6] == "Hub: text to image"
            assert to_get["FLUX.1 dev  gated"][3].endswith(" GB")

            picker.query_one("#picker-filter", Input).value = "tiny sd to"
            await pilot.pause()
            assert [row[1] for row in rows(picker)] == [TO_GET, "Tiny SD to get"]
            await pilot.press("down", "down", "enter")
            status = app.main_screen.query_one(StatusPanel)
            await wait_for(pilot, lambda: status.state == "downloading" or app.session.model == "someone/tiny-sd",
                           what="the download to start")
            await wait_for(pilot, lambda: app.session.hosted.server.engine.model_label == "someone/tiny-sd",
                           what="the downloaded model loaded")
            assert any(path == "unet/diffusion_pytorch_model.safetensors" for path, _ in hub.requests)

            # A GGUF file: the file, then its base repository without the transformer's weights, then it loads.
            picker = await open_picker(pilot, app)
            picker.query_one("#picker-filter", Input).value = "tiny z-image"
            await pilot.pause()
            assert [row[1] for row in rows(picker)] == [TO_GET, "Tiny Z-Image Q8_0"]
            await pilot.press("down", "down", "enter")
            await wait_for(pilot, lambda: app.session.hosted.server.engine.model_label == GGUF,
                           what="the downloaded GGUF file loaded")
            assert hub.fetched("someone/z-image-gguf") == {"z_image_turbo-Q8_0.gguf"}
            assert "vae/diffusion_pytorch_model.safetensors" in hub.fetched("Tongyi-MAI/Z-Image-Turbo")
            assert not any(path.startswith("transformer/") and path.endswith(".safetensors")
                           for path in hub.fetched("Tongyi-MAI/Z-Image-Turbo"))
            assert app.session.model == GGUF
