"""Command palette entries, named ``category: action``."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


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
