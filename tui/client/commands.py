"""The command palette: its entries, named ``category: action``, and what the entries that
have no key of their own do (PaletteActions, part of the app)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.client.widgets.log import LogPanel
from tui.client.widgets.settings import SettingsPanel
from tui.text import plural
from tui.client.wording import clean_pasted_path


class SdtuiCommands(Provider):
    def _commands(self):
        app = self.app
        return [
            ("history: open", "Every generation, searchable (F2)", app.action_history),
            ("history: import PNG", "Load parameters from an A1111, ComfyUI, InvokeAI or sdtui PNG",
             app.action_import_png),
            ("model: pick", "Models in the Hugging Face cache, the models folder, recent ones (F3)",
             app.action_models),
            ("prompt: insert a LoRA or embedding", "From the models folder's loras/ and embeddings/ (Ctrl+N)",
             app.action_networks),
            ("grid: X/Y plot of the prompt", "Vary one or two of seed, steps, guidance, scheduler, a word (S/R)",
             app.action_grid),
            ("model: switch by name", "Load a model by Hub id, folder or file path", app.action_switch_model),
            ("model: use the demo model", "Tiny random-weight model, offline", partial(app.use_model, "demo")),
            ("settings: toggle attention slicing", "Slices attention to save memory", app.action_toggle_slicing),
            ("settings: toggle previews", "Live previews while generating", app.action_toggle_previews),
            ("settings: save the seed as the default", "A locked seed holds until sdtui quits; this writes it "
             "to config.toml for every later run", app.action_save_seed),
            ("image: copy last image path", "To the clipboard (OSC 52, works over SSH)", app.action_copy_path),
            ("log: clear", "Empty the live log", app.action_clear_log),
            ("outputs: show folder path", "Where images are saved", app.action_show_outputs),
            ("queue: clear", "Drop jobs waiting to run", app.action_clear_queue),
            ("server: restart", "Start the sdtui server again after it stopped", app.action_restart_server),
        ]

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class PaletteActions:
    """The app's actions reached from the palette alone (and from a screen or two); mixed into
    SdtuiApp, whose ``main_screen``, ``session`` and navigation they use."""

    _grid_axes = ""  # the last grid asked for, offered again

    def action_import_png(self) -> None:
        from tui.client.screens.ask import AskScreen
        from tui.store.images import MetadataError
        from tui.store.importers import import_png

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                imported = import_png(Path(clean_pasted_path(path)))
            except MetadataError as error:
                self.notify(str(error), severity="error", timeout=10)
                return
            name = Path(clean_pasted_path(path)).name
            if imported.lora_hashes and "prompt" in imported.values:  # hashing LoRAs reads them whole: a thread
                self.run_worker(partial(self._find_loras_by_hash, imported, name), thread=True, exit_on_error=False)
            else:
                self._load_imported(imported, name)

        self.push_screen(AskScreen("Import parameters from a PNG: its path", "", "/path/to/image.png"), chosen)

    def _find_loras_by_hash(self, imported, name: str) -> None:
        from tui.engine.networks import LORAS, lora_names_by_hash

        try:
            prompt, notes = lora_names_by_hash(imported.values["prompt"], imported.lora_hashes,
                                               self.models_dir() / LORAS, self.session.allow_pickle)
        except OSError as error:
            prompt, notes = imported.values["prompt"], [f"LoRAs were not looked for by hash: {error}"]
        imported.values["prompt"] = prompt
        imported.notes[:0] = notes
        self.call_from_thread(self._load_imported, imported, name)

    def _load_imported(self, imported, name: str) -> None:
        self.back_to_main()
        self.main_screen.load_values(imported.values)
        self.main_screen.log_line(f"imported {imported.source} parameters from {name}")
        for note in imported.notes:
            self.main_screen.log_line(note, "warning")
        more = f" {plural(len(imported.notes), 'note')} in the log." if imported.notes else ""
        self.notify(f"Loaded {imported.source} parameters from {name}.{more}", timeout=8)

    def action_grid(self) -> None:
        from tui.client.screens.ask import AskScreen

        def chosen(axes: str | None) -> None:
            if axes and self.main_screen.start_grid(axes):
                self._grid_axes = axes

        # One line of at most 74 cells: the dialog is 80 wide. The placeholder is the example.
        self.push_screen(AskScreen("X/Y grid of the prompt: seed, steps, guidance, scheduler or sr=find,new",
                                   self._grid_axes, "steps=10,20,30; guidance=5,7"), chosen)

    def action_switch_model(self) -> None:
        from tui.client.screens.ask import AskScreen

        def chosen(model: str | None) -> None:
            if model:
                self.use_model(clean_pasted_path(model))

        self.push_screen(AskScreen("Model: a Hub id (owner/name), a diffusers folder, a .safetensors "
                                   "checkpoint, or demo",
                                   self.settings.model), chosen)

    def action_toggle_slicing(self) -> None:
        setting = self.main_screen.settings.attention_slicing
        current = bool(self.session.slicing) if setting == "auto" else setting == "on"
        value = "off" if current else "on"
        self.main_screen.query_one(SettingsPanel).set_value("attention_slicing", value)
        self.notify(f"Attention slicing {value} from the next job.", timeout=3)

    def action_toggle_previews(self) -> None:
        value = not self.main_screen.settings.previews
        self.main_screen.query_one(SettingsPanel).set_value("previews", value)
        self.notify(f"Previews {'on' if value else 'off'}.", timeout=3)

    def action_save_seed(self) -> None:
        seed = self.main_screen.settings.seed
        problem = self.session.save_seed_as_default()
        if problem:
            self.notify(problem, severity="error", timeout=8)
        elif seed == "random":
            self.notify(f"config.toml: each run draws a random seed ({self.places.config_file}).", timeout=5)
        else:
            self.notify(f"config.toml: every run starts with seed {seed}, sdtui generate's too "
                        f"({self.places.config_file}).", timeout=5)

    def action_copy_path(self) -> None:
        path = self.main_screen.last_path
        if not path:
            latest = self.history.latest_done()  # from an earlier session
            path = latest.image_path if latest else None
        if not path:
            self.notify("No image yet.", timeout=3)
            return
        self.copy_to_clipboard(path)
        self.notify(f"Copied {path}", timeout=4)

    def action_clear_log(self) -> None:
        self.main_screen.query_one(LogPanel).clear_lines()

    def action_show_outputs(self) -> None:
        self.notify(f"Images are saved in {self.history.outputs_dir}", timeout=8)
        self.main_screen.log_line(f"outputs folder: {self.history.outputs_dir}")

    def action_restart_server(self) -> None:
        if self.session.connected:
            self.notify("The sdtui server is running; `sdtui stop` in a shell stops it.", timeout=5)
            return
        self.main_screen.log_line("starting the sdtui server again")
        self.session.restart()

    def action_clear_queue(self) -> None:
        self.main_screen.action_clear_queue()
