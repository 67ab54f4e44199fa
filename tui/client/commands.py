"""The command palette: its entries, named ``category: action`` (what those without a key of
their own do is palette_actions.py's PaletteActions). It loads when the palette first opens."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class SdtuiCommands(Provider):
    def _commands(self):
        app, palette = self.app, self.app.palette
        return [
            ("history: open", "Every generation, searchable (F2)", app.action_history),
            ("history: import PNG", "Load parameters from an A1111, ComfyUI, InvokeAI or sdtui PNG",
             palette.import_png),
            ("model: pick", "Models in the Hugging Face cache, the models folder, recent ones (F3)",
             app.action_models),
            ("prompt: insert a LoRA or embedding", "From the models folder's loras/ and embeddings/ (Ctrl+N)",
             app.action_networks),
            ("grid: X/Y plot of the prompt", "Vary one or two of seed, steps, guidance, scheduler, a word (S/R)",
             palette.grid),
            ("model: switch by name", "Load a model by Hub id, folder or file path", palette.switch_model),
            ("model: use the demo model", "Tiny random-weight model, offline", partial(palette.use_model, "demo")),
            ("settings: toggle attention slicing", "Slices attention to save memory", palette.toggle_slicing),
            ("settings: toggle previews", "Live previews while generating", palette.toggle_previews),
            ("settings: save the seed as the default", "A locked seed holds until sdtui quits; this writes it "
             "to config.toml for every later run", palette.save_seed),
            ("image: copy last image path", "To the clipboard (OSC 52, works over SSH)", palette.copy_path),
            ("log: clear", "Empty the live log", palette.clear_log),
            ("outputs: show folder path", "Where images are saved", palette.show_outputs),
            ("queue: clear", "Drop jobs waiting to run", palette.clear_queue),
            ("server: restart", "Start the sdtui server again after it stopped", palette.restart_server),
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


def with_help_for_keys(commands, action_help):
    """Textual's own palette ``commands``, with its "Keys" panel (which Escape does not close)
    replaced by F1 help, which lists every screen's keys and closes with Escape."""
    from textual.app import SystemCommand

    for command in commands:
        if command.title == "Keys":
            yield SystemCommand("Keys", "Every key, on every screen (F1)", action_help)
        else:
            yield command
