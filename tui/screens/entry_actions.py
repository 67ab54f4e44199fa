"""The keys that act on one history entry, shared by the history list and the viewer, so
the same key does the same thing in both."""

from __future__ import annotations

from dataclasses import replace

from textual.binding import Binding

from tui.store.history import HistoryEntry
from tui.text import visible

VARIATIONS = 4

ENTRY_BINDINGS = [
    Binding("r", "rerun", "Re-run", id="entry-rerun"),
    Binding("v", "variations", "Variations", id="entry-variations"),
    Binding("c", "copy_path", "Copy path", id="entry-copy"),
    Binding("d,delete", "delete", "Delete", id="entry-delete"),
]


class EntryActions:
    """Mixed into a Screen that has a current entry (``selected``) and knows what to show
    once it is deleted (``entry_deleted``)."""

    @property
    def selected(self) -> HistoryEntry | None:
        raise NotImplementedError

    def entry_deleted(self, entry: HistoryEntry) -> None:
        raise NotImplementedError

    def _need_selection(self) -> HistoryEntry | None:
        entry = self.selected
        if entry is None:
            self.app.notify("No entry selected.", timeout=3)
        return entry

    def action_load(self) -> None:
        entry = self._need_selection()
        if entry:
            self.app.back_to_main()
            self.app.main_screen.load_request(entry.request())
            self.app.notify("Prompt and settings loaded from history.", timeout=3)

    def action_rerun(self) -> None:
        entry = self._need_selection()
        if entry:
            if self.app.main_screen.queue_request(entry.request(), "the same image again"):
                self.app.notify(f"Queued: the same image again (seed {entry.seed}).", timeout=3)

    def action_variations(self) -> None:
        entry = self._need_selection()
        if entry:
            request = replace(entry.request(), seed=None, count=VARIATIONS)
            if self.app.main_screen.queue_request(request, f"{VARIATIONS} variations"):
                self.app.notify(f"Queued: {VARIATIONS} variations with new seeds.", timeout=3)

    def action_copy_path(self) -> None:
        entry = self._need_selection()
        if not entry:
            return
        if not entry.image_path:
            self.app.notify("This entry has no image file (the job did not finish).", timeout=3)
            return
        self.app.copy_to_clipboard(entry.image_path)
        self.app.notify(f"Copied {entry.image_path}", timeout=4)

    def action_show_path(self) -> None:
        entry = self._need_selection()
        if entry:
            where = entry.image_path or "no file (the job did not finish)"
            self.app.notify(where, title="image path", timeout=10)

    def action_delete(self) -> None:
        entry = self._need_selection()
        if not entry:
            return
        from tui.screens.confirm import ConfirmScreen

        what = "the entry and its image file" if entry.image_path else "the entry"

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            self.history.delete(entry.id)
            self.entry_deleted(entry)
            self.app.notify("Deleted.", timeout=2)

        self.app.push_screen(ConfirmScreen(f"Delete {what}?\n{visible(entry.prompt)[:200]}"), answered)
