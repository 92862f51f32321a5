"""The footer: the keys of the view on screen, drawn again only when they change."""

from __future__ import annotations

from typing import Any

from textual.widgets import Footer


class KeysFooter(Footer):
    """Textual's footer, recomposed only when what it shows changes.

    Textual rebuilds the footer (removes its keys, mounts new ones, styles and lays them out) on
    every refresh of the screen's bindings: a focus change, a mount, the app gaining focus, a
    view's key enabled or disabled. Switching to a view rebuilt its footer seven times with the
    same keys, and the old keys were garbage for the collector to find. This one compares the
    keys it would show (key, label, action, enabled, tooltip) with those it shows, first.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple | None = None

    async def recompose(self) -> None:
        if getattr(self, "_bindings_ready", True) and self.is_attached:
            shown = self._keys_to_show()
            if shown == self._shown:
                return
            self._shown = shown
        await super().recompose()

    def _keys_to_show(self) -> tuple:
        app = self.app
        keys = tuple(
            (
                binding.key,
                app.get_key_display(binding),
                binding.description,
                binding.action,
                enabled,
                tooltip,
                getattr(binding, "group", None),  # (Textual 0.86 has no groups)
            )
            for _node, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        )
        return keys, self.compact, self.show_command_palette, getattr(self, "combine_groups", None)
