"""Console themes: TOML files in ``themes/`` registered as Textual themes; and the settings file
(``$MRT_TUI_SETTINGS``, else ``$XDG_CONFIG_HOME/mrt/tui.json``) that remembers the theme and holds
the operator's remapped keys."""

from __future__ import annotations

import json
import logging
import os
import sys
import tomllib
from pathlib import Path

from textual.theme import Theme

log = logging.getLogger(__name__)

DEFAULT_THEME = "mrt-dark"
_FIELDS = {
    "name",
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "dark",
}


def theme_dirs() -> list[Path]:
    """Where theme files are looked for: ``$MRT_THEMES_DIR``, the checkout, the installed copy."""
    dirs = []
    if os.environ.get("MRT_THEMES_DIR"):
        dirs.append(Path(os.environ["MRT_THEMES_DIR"]))
    dirs.append(Path(__file__).resolve().parents[1] / "themes")
    dirs.append(Path(sys.prefix) / "share" / "mrt" / "themes")
    return dirs


def load_themes() -> list[Theme]:
    """Every theme file found (the first of each name wins); a broken file is skipped."""
    themes: dict[str, Theme] = {}
    for folder in theme_dirs():
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
                fields = {k: v for k, v in data.items() if k in _FIELDS}
                theme = Theme(**fields)
            except (OSError, ValueError, TypeError):
                continue
            themes.setdefault(theme.name, theme)
    return list(themes.values())


def theme_names() -> list[str]:
    """Every theme the console can show: its own (the files found) first, then Textual's."""
    from textual.theme import BUILTIN_THEMES

    ours = [theme.name for theme in load_themes()]
    return ours + sorted(name for name in BUILTIN_THEMES if name not in ours)


def settings_path() -> Path:
    if os.environ.get("MRT_TUI_SETTINGS"):
        return Path(os.environ["MRT_TUI_SETTINGS"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mrt" / "tui.json"


def remembered_theme() -> str | None:
    try:
        return json.loads(settings_path().read_text(encoding="utf-8")).get("theme")
    except (OSError, ValueError, AttributeError):
        return None


def keymap() -> dict[str, str]:
    """Remapped keys from the settings file: ``{"keymap": {"outbox.resend": "R"}}`` (binding id
    to key; ``?`` lists the ids)."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8")).get("keymap", {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def remember_theme(name: str) -> Path | None:
    """Write the theme into the settings file (created if need be); its path, or None when it
    cannot be written."""
    path = settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data["theme"] = name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    except OSError as exc:  # a read-only home: the choice lasts for this run only
        log.warning("cannot remember the theme in %s: %s", path, exc)
        return None
    return path
