"""What the command palette's entries that have no key of their own do (a screen or two use
some): the app holds one PaletteActions as ``app.palette``. The palette's list of entries is in
commands.py, which loads with the palette."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tui.client.widgets.log import LogPanel
from tui.text import plural
from tui.client.wording import clean_pasted_path


class PaletteActions:
    """What the palette's entries that have no key of their own do (a screen or two use some):
    the app holds one as ``app.palette``."""

    def __init__(self, app) -> None:
        self.app = app
        self.session = app.session
        self._grid_axes = ""  # the last grid asked for, offered again

    def import_png(self) -> None:
        from tui.client.screens.ask import AskScreen
        from tui.store.images import MetadataError
        from tui.store.importers import import_png

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                imported = import_png(Path(clean_pasted_path(path)))
            except MetadataError as error:
                self.app.notify(str(error), severity="error", timeout=10)
                return
            name = Path(clean_pasted_path(path)).name
            if imported.lora_hashes and "prompt" in imported.values:  # hashing LoRAs reads them whole: a thread
                self.app.run_worker(partial(self._find_loras_by_hash, imported, name), thread=True,
                                    exit_on_error=False)
            else:
                self._load_imported(imported, name)

        self.app.push_screen(AskScreen("Import parameters from a PNG: its path", "", "/path/to/image.png"), chosen)

    def _find_loras_by_hash(self, imported, name: str) -> None:
        from tui.engine.networks import LORAS, lora_names_by_hash

        try:
            prompt, notes = lora_names_by_hash(imported.values["prompt"], imported.lora_hashes,
                                               self.session.models_dir / LORAS, self.session.allow_pickle)
        except OSError as error:
            prompt, notes = imported.values["prompt"], [f"LoRAs were not looked for by hash: {error}"]
        imported.values["prompt"] = prompt
        imported.notes[:0] = notes
        self.app.call_from_thread(self._load_imported, imported, name)

    def _load_imported(self, imported, name: str) -> None:
        main = self.app.main_screen
        self.app.back_to_main()
        main.fill(imported.values)
        main.log_line(f"imported {imported.source} parameters from {name}")
        for note in imported.notes:
            main.log_line(note, "warning")
        more = f" {plural(len(imported.notes), 'note')} in the log." if imported.notes else ""
        self.app.notify(f"Loaded {imported.source} parameters from {name}.{more}", timeout=8)

    def pick_model(self) -> None:
        import platform

        from tui.client.screens.models import ModelPickerScreen
        from tui.engine.catalog import load_recent
        from tui.engine.device import expected_device
        from tui.engine.fit import held_by_server

        if isinstance(self.app.screen, ModelPickerScreen):
            return

        def chosen(model: str | None) -> None:
            if model:
                self.use_model(model)

        recent = load_recent(self.session.places.recent_models_file)
        settings = self.session.settings
        device = expected_device(settings.device, self.session.device, platform.system())
        memory = self.session.memory
        held = held_by_server(device, memory) if memory is not None and self.session.model else 0
        self.app.push_screen(ModelPickerScreen(self.session.models_dir, recent, settings.model, settings.dtype, device,
                                               memory, held, self.session.places.known_models_file,
                                               settings.quantize), chosen)

    def use_model(self, model: str) -> None:
        self.app.main_screen.change_setting("model", model)

    def pick_network(self) -> None:
        from tui.client.screens.networks import NetworkPickerScreen
        from tui.engine.networks import lora_label

        if isinstance(self.app.screen, NetworkPickerScreen):
            return

        def chosen(text: str | None) -> None:
            if text:
                self.app.main_screen.insert_into_prompt(text)

        # LoRAs go by the label families taking the same ones share (FLUX.1's fit Kontext too)
        family = lora_label(self.session.family.family) if self.session.family else ""
        self.app.push_screen(NetworkPickerScreen(self.session.models_dir, family, self.session.allow_pickle), chosen)

    def grid(self) -> None:
        from tui.client.screens.ask import AskScreen

        def chosen(axes: str | None) -> None:
            if axes and self.start_grid(axes):
                self._grid_axes = axes

        # One line of at most 74 cells: the dialog is 80 wide. The placeholder is the example.
        self.app.push_screen(AskScreen("X/Y grid of the prompt: seed, steps, guidance, scheduler or sr=find,new",
                                       self._grid_axes, "steps=10,20,30; guidance=5,7"), chosen)

    def start_grid(self, axes_text: str) -> bool:
        """Queue an X/Y grid of the current prompt over ``axes_text`` ("steps=10,20; guidance=5,7");
        its contact sheet is made and shown once every cell's job has ended (save_grid)."""
        from tui.client.grid import grid_cells

        main = self.app.main_screen
        made = main.checked(lambda: grid_cells(axes_text, main.current_request()))
        if made is None:
            return False
        axes, requests = made
        grid, problems = self.session.queue_grid(requests, axes)
        main.log_line(f"X/Y grid {grid.serial}: {grid.describe()}, {len(requests)} jobs")
        if problems:
            self.app.notify(f"Not queued: {problems[0]}.", severity="error", timeout=8)
        return True

    def save_grid(self, grid) -> None:
        """Every cell's job of ``grid`` has ended: make its contact sheet (on a thread), then show it."""
        self.app.run_worker(partial(self._save_sheet, grid), thread=True)

    def _save_sheet(self, grid) -> None:
        from tui.client.grid import GridError

        try:
            sheet = grid.save_sheet()
        except (GridError, OSError) as error:
            self.app.call_from_thread(self.app.notify, f"X/Y grid {grid.serial}: not saved ({error})",
                                      severity="error", timeout=8)
            return
        self.app.call_from_thread(self._sheet_saved, grid.serial, sheet)

    def _sheet_saved(self, serial: int, sheet) -> None:
        self.app.main_screen.log_line(f"X/Y grid {serial} saved: {sheet.image_path}")
        self.app.open_viewer(sheet)

    def switch_model(self) -> None:
        from tui.client.screens.ask import AskScreen

        def chosen(model: str | None) -> None:
            if model:
                self.use_model(clean_pasted_path(model))

        self.app.push_screen(AskScreen("Model: a Hub id (owner/name), a diffusers folder, a .safetensors "
                                       "checkpoint, or demo", self.session.settings.model), chosen)

    def toggle_slicing(self) -> None:
        setting = self.session.settings.attention_slicing
        current = bool(self.session.slicing) if setting == "auto" else setting == "on"
        value = "off" if current else "on"
        self.app.main_screen.change_setting("attention_slicing", value)
        self.app.notify(f"Attention slicing {value} from the next job.", timeout=3)

    def toggle_previews(self) -> None:
        value = not self.session.settings.previews
        self.app.main_screen.change_setting("previews", value)
        self.app.notify(f"Previews {'on' if value else 'off'}.", timeout=3)

    def save_seed(self) -> None:
        seed = self.session.settings.seed
        problem = self.session.save_seed_as_default()
        config = self.session.places.config_file
        if problem:
            self.app.notify(problem, severity="error", timeout=8)
        elif seed == "random":
            self.app.notify(f"config.toml: each run draws a random seed ({config}).", timeout=5)
        else:
            self.app.notify(f"config.toml: every run starts with seed {seed}, sdtui generate's too ({config}).",
                            timeout=5)

    def copy_path(self) -> None:
        path = self.session.last_path
        if not path:
            latest = self.session.history.latest_done()  # from an earlier session
            path = latest.image_path if latest else None
        if not path:
            self.app.notify("No image yet.", timeout=3)
            return
        self.app.copy_to_clipboard(path)
        self.app.notify(f"Copied {path}", timeout=4)

    def clear_log(self) -> None:
        self.app.main_screen.query_one(LogPanel).clear_lines()

    def show_outputs(self) -> None:
        outputs = self.session.history.outputs_dir
        self.app.notify(f"Images are saved in {outputs}", timeout=8)
        self.app.main_screen.log_line(f"outputs folder: {outputs}")

    def restart_server(self) -> None:
        if self.session.connected:
            self.app.notify("The sdtui server is running; `sdtui stop` in a shell stops it.", timeout=5)
            return
        self.app.main_screen.log_line("starting the sdtui server again")
        self.session.restart()

    def clear_queue(self) -> None:
        self.app.main_screen.action_clear_queue()
