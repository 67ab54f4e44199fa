"""The keys that act on one history entry, shared by the history list and the viewer, so
the same key does the same thing in both."""

from __future__ import annotations

from dataclasses import replace

from textual.binding import Binding

from tui.client.messages import LoadIntoPrompt, QueueRequest
from tui.engine.img2img import hires_size
from tui.engine.request import HIRES_STRENGTH_DEFAULT, SIZE_MAX
from tui.store.history import HistoryEntry
from tui.text import visible

VARIATIONS = 4

HIRES_SCALE = 1.5
STRENGTH_STEP = 0.05

ENTRY_BINDINGS = [
    Binding("r", "rerun", "Re-run", id="entry-rerun"),
    Binding("v", "variations", "Variations", id="entry-variations"),
    # Shown in F1 help, not the footer, which is full at 80 columns.
    Binding("g", "img2img", "Vary this (img2img at the strength)", id="entry-img2img", show=False),
    Binding("h", "hires", "Hires fix (x1.5, then img2img at 0.45)", id="entry-hires", show=False),
    Binding("left_square_bracket", "strength(-1)", "Image-to-image strength -0.05", id="entry-strength-down",
            key_display="[", show=False),
    Binding("right_square_bracket", "strength(1)", "Image-to-image strength +0.05", id="entry-strength-up",
            key_display="]", show=False),
    Binding("e", "edit", "Edit by instruction (an edit model: Kontext, Qwen-Image-Edit, FLUX.2 klein)",
            id="entry-edit", show=False),
    Binding("u", "parent", "Up to the image this one was made from", id="entry-parent", show=False),
    Binding("c", "copy_path", "Copy path", id="entry-copy"),
    Binding("d,delete", "delete", "Delete", id="entry-delete"),
]


def image_size(path: str) -> tuple[int, int] | None:
    """An image file's size from its header, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        return None


def edit_refusal(model) -> str | None:
    """Why the loaded model (a ModelFamily, None before one loads) cannot edit by instruction."""
    from tui.engine.families import FAMILIES

    if model is None:
        return "No model is loaded yet; load an edit model first."
    if model.family.pipelines.edit:
        return None
    able = ", ".join(f.label for f in FAMILIES if f.pipelines.edit)
    return f"{model.label} models cannot edit a picture by instruction; load a model that can ({able})."


class EntryActions:
    """Mixed into a Screen that has a current entry (``selected``) and knows what to show
    once it is deleted (``entry_deleted``)."""

    @property
    def selected(self) -> HistoryEntry | None:
        raise NotImplementedError

    def entry_deleted(self, entry: HistoryEntry) -> None:
        raise NotImplementedError

    def go_to_entry(self, entry: HistoryEntry) -> None:
        """Make ``entry`` the current one."""
        raise NotImplementedError

    def _need_selection(self, any_picture: bool = False) -> HistoryEntry | None:
        """The entry to act on; a picture that is not in the history (an X/Y grid's contact sheet)
        only when ``any_picture``."""
        entry = self.selected
        if entry is None:
            self.app.notify("No entry selected.", timeout=3)
        elif entry.id is None and not any_picture:
            self.app.notify("This is an X/Y grid's contact sheet; its images are in the history (n steps to them).",
                            timeout=4)
            return None
        return entry

    def action_load(self) -> None:
        entry = self._need_selection()
        if entry:
            self.post_message(LoadIntoPrompt(entry.request(), "Prompt and settings loaded from history."))

    def action_rerun(self) -> None:
        entry = self._need_selection()
        if entry:
            self.post_message(QueueRequest(entry.request(), "the same image again",
                                           f"Queued: the same image again (seed {entry.seed})."))

    def action_variations(self) -> None:
        entry = self._need_selection()
        if entry:
            request = replace(entry.request(), seed=None, count=VARIATIONS)
            self.post_message(QueueRequest(request, f"{VARIATIONS} variations",
                                           f"Queued: {VARIATIONS} variations with new seeds."))

    def _source(self) -> tuple[HistoryEntry, tuple[int, int]] | None:
        """The selected entry and its image's size, when it has an image file to start from."""
        entry = self._need_selection()
        if not entry:
            return None
        size = image_size(entry.image_path) if entry.image_path else None
        if size is None:
            self.app.notify("This entry has no image file to start from.", timeout=3)
            return None
        return entry, size

    def action_img2img(self) -> None:
        found = self._source()
        if not found:
            return
        (entry, (width, height)), strength = found, self.app.session.strength
        size = hires_size(width, height, 1.0)
        request = replace(entry.request(), init_image=entry.image_path, strength=strength, hires=0.0, seed=None,
                          width=size[0], height=size[1])
        cut = f" at {size[0]}x{size[1]} (sizes are multiples of 8)" if size != (width, height) else ""
        self.post_message(QueueRequest(
            request, f"a variation of this image at strength {strength:g}{cut}",
            f"Queued: a variation of this image{cut}, strength {strength:g} ([ and ] change it).", timeout=4))

    def action_edit(self) -> None:
        """Ask for an instruction and queue an edit of the image with the loaded edit model, at the
        image's size and the current settings (the edit model's, not the source's)."""
        found = self._source()
        if not found:
            return
        entry, (width, height) = found
        refusal = edit_refusal(self.app.session.family)
        if refusal:
            self.app.notify(refusal, severity="error", timeout=8)
            return
        from tui.client.screens.ask import AskScreen

        def asked(instruction: str | None) -> None:
            if not instruction:
                return
            size = hires_size(width, height, 1.0)
            request = replace(self.app.session.settings_request(instruction), init_image=entry.image_path, edit=True,
                              seed=None, count=1, width=size[0], height=size[1])
            self.post_message(QueueRequest(request, f"an edit of #{entry.id}: {instruction}",
                                           f"Queued: {instruction}", timeout=4))

        self.app.push_screen(AskScreen(f"Edit #{entry.id}: what should change?", placeholder="make the sky stormy"),
                             asked)

    def action_parent(self) -> None:
        entry = self._need_selection()
        if not entry:
            return
        parent = self.app.history.parent(entry)
        if parent is None:
            self.app.notify("This image was not made from another image in the history.", timeout=3)
        else:
            self.go_to_entry(parent)

    def action_hires(self) -> None:
        found = self._source()
        if not found:
            return
        entry, (width, height) = found
        width, height = hires_size(width, height, HIRES_SCALE)
        if max(width, height) > SIZE_MAX:
            self.app.notify(f"Hires fix: {width}x{height} is over the {SIZE_MAX} limit.", severity="error", timeout=5)
            return
        request = replace(entry.request(), init_image=entry.image_path, strength=HIRES_STRENGTH_DEFAULT,
                          hires=HIRES_SCALE, width=width, height=height)
        self.post_message(QueueRequest(
            request, f"hires fix to {width}x{height}",
            f"Queued: hires fix to {width}x{height} (x{HIRES_SCALE:g}, strength {HIRES_STRENGTH_DEFAULT:g}).",
            timeout=4))

    def action_strength(self, direction: int) -> None:
        session = self.app.session
        session.strength = round(min(1.0, max(STRENGTH_STEP, session.strength + direction * STRENGTH_STEP)), 2)
        self.app.toast_slots.show("strength", f"Image-to-image strength {session.strength:g} (g uses it).")
        self.strength_changed()

    def strength_changed(self) -> None:
        """Show the image-to-image strength where it stays in view (a screen says where)."""

    def action_copy_path(self) -> None:
        entry = self._need_selection(any_picture=True)
        if not entry:
            return
        if not entry.image_path:
            self.app.notify("This entry has no image file (the job did not finish).", timeout=3)
            return
        self.app.copy_to_clipboard(entry.image_path)
        self.app.notify(f"Copied {entry.image_path}", timeout=4)

    def action_show_path(self) -> None:
        entry = self._need_selection(any_picture=True)
        if entry:
            where = entry.image_path or "no file (the job did not finish)"
            self.app.notify(where, title="image path", timeout=10)

    def action_delete(self) -> None:
        entry = self._need_selection()
        if not entry:
            return
        from tui.client.screens.confirm import ConfirmScreen

        what = "the entry and its image file" if entry.image_path else "the entry"

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            self.history.delete(entry.id)
            self.entry_deleted(entry)
            self.app.notify("Deleted.", timeout=2)

        self.app.push_screen(ConfirmScreen(f"Delete {what}?\n{visible(entry.prompt)[:200]}"), answered)
