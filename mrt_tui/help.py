"""``?``: every key the operator can press right now, as the footer would show it.

The list is the screen's ``active_bindings`` (Textual's own view of what a key press would do:
the focused widget's bindings, the screen's including the ones it inherits, the app's, with the
operator's remapped keys applied), so help can never disagree with the keys that work.
"""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen

KEY_WIDTH = 10
DESCRIPTION_WIDTH = 22


def bindings_help(screen: Screen) -> Text:
    """One line per active binding of ``screen``: display key, description, binding id.

    The bindings of the view come first, then those that work everywhere; a binding that
    cannot act now (nothing selected) is dimmed. The id is what the settings file's keymap
    takes to remap a key."""
    app = screen.app
    groups: dict[str, list[Text]] = {"view": [], "widget": [], "app": []}
    for active in screen.active_bindings.values():
        binding = active.binding
        line = Text(no_wrap=True)
        line.append(f"  {app.get_key_display(binding):<{KEY_WIDTH}}", style="bold")
        line.append(f" {binding.description or binding.action:<{DESCRIPTION_WIDTH}}")
        if binding.id:
            line.append(f" [{binding.id}]", style="dim")
        if not active.enabled:
            line.stylize("dim")
        group = "view" if active.node is screen else "app" if active.node is app else "widget"
        groups[group].append(line)
    text = Text()
    headings = {
        "view": screen.title or "This view",
        "widget": "Table and fields",
        "app": "Everywhere",
    }
    for group, lines in groups.items():
        if lines:
            text.append(f"{headings[group]}\n", style="bold underline")
            text.append(Text("\n").join(lines))
            text.append("\n\n")
    text.append(
        "Keys are remapped in the settings file by binding id (see mrt-tui --help).", style="dim"
    )
    return text
