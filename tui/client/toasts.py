"""Toasts that stand in for the last one of their slot: a key pressed again and again shows its
latest value instead of a stack of toasts."""

from __future__ import annotations

from textual.notifications import Notification, Notify


class ToastSlots:
    """The app's toasts by slot, held as ``app.toast_slots``."""

    def __init__(self, app) -> None:
        self.app = app
        self.shown: dict[str, Notification] = {}  # slot -> the toast it showed last

    def show(self, slot: str, message: str, timeout: float = 2.0) -> None:
        """``message`` as a plain-text toast in place of ``slot``'s last one."""
        old = self.shown.get(slot)
        if old is not None:
            self.app._unnotify(old, refresh=False)  # one already gone is forgotten quietly
        notification = Notification(message, "", "information", timeout, markup=False)
        self.shown[slot] = notification
        self.app.post_message(Notify(notification))
