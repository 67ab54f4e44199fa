"""Textual's footer, showing only the keys that fit whole.

Textual's Footer lays its keys out in one row and docks the palette key over the right end, so
on a narrow terminal a key is cut mid-word with a stray letter before "^p palette". Here a key
that would reach under the palette key is hidden, and every key after it: what shows is always
whole, and F1 lists every key anyway.
"""

from __future__ import annotations

from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class FittingFooter(Footer):
    def compose(self):
        # Textual's Footer draws no keys until the screen first reports its bindings, and then a
        # frame later: the first frame would have an empty footer. The screen's bindings are
        # known when the footer is composed, so the keys are there from the first frame.
        self.set_reactive(Footer._bindings_ready, True)
        yield from super().compose()

    async def recompose(self) -> None:
        await super().recompose()
        self._fit_after_layout()

    def on_resize(self) -> None:
        self._fit_after_layout()

    def _fit_after_layout(self) -> None:
        for key in self.query(FooterKey):
            key.display = True
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        keys = list(self.query(FooterKey))
        palette = next((key for key in keys if key.has_class("-command-palette")), None)
        limit = palette.region.x if palette is not None else self.region.right
        past = False
        for key in keys:
            if key is palette:
                continue
            past = past or key.region.right > limit
            key.display = not past
