"""``mrt-tui``: open the console in one of its three modes.

mrt-tui --config FILE            the engine runs in this process, shown live
mrt-tui --attach --config FILE   open the store a separate `mrt-engine run` writes
mrt-tui --attach --db PATH|URL   the same, by the store's path or URL (postgresql://user@host/db:
                                 its password from PGPASSWORD or ~/.pgpass, or with --config
                                 from the variable state.password_env names)
mrt-tui --demo                   simulated upstreams on 127.0.0.1: no token, no internet
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mrt_engine.config import ConfigError
from mrt_engine.store.db import StoreError
from mrt_engine.store.lock import EngineAlreadyRunning

SETTINGS_HELP = """\
settings file:
  $MRT_TUI_SETTINGS, else $XDG_CONFIG_HOME/mrt/tui.json (~/.config/mrt/tui.json).
  The console writes it only when you change a setting in the console (a theme
  chosen in the command palette is remembered there; --theme is for one run).
  It holds the theme and your remapped keys, by binding id (? lists every key
  of the view with its binding id):
    {"theme": "mrt-light", "keymap": {"outbox.resend": "R", "events.follow": "ctrl+f"}}

The engine's log goes to $XDG_STATE_HOME/mrt/mrt-tui.log (~/.local/state/...)
while the console owns the terminal. SIGTERM, SIGHUP and q stop the engine cleanly.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrt-tui",
        description="The Model Release Tracker's operator console.",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="config file (JSON or TOML); default $MRT_CONFIG")
    parser.add_argument(
        "--attach", action="store_true", help="open the store of a running mrt-engine"
    )
    parser.add_argument(
        "--db",
        help="with --attach: the store's path or URL instead of the config's; a"
        " postgresql://user@host/db URL takes its password from PGPASSWORD or ~/.pgpass, or with"
        " --config from the variable state.password_env names",
    )
    parser.add_argument(
        "--demo", action="store_true", help="simulated upstreams and channel on 127.0.0.1"
    )
    parser.add_argument(
        "--theme",
        help="this run's theme: mrt-dark, mrt-light, mrt-high-contrast or a Textual theme",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.theme is not None:
        from mrt_tui.themes import theme_names

        names = theme_names()
        if args.theme not in names:
            parser.error(f"unknown theme {args.theme!r}; available: {', '.join(names)}")
    config_path = args.config or os.environ.get("MRT_CONFIG")
    log_file = _log_to_file()
    from mrt_tui.signals import StopSignals

    with StopSignals() as signals:  # from here on, SIGTERM / SIGHUP stop the engine cleanly
        try:
            session = _session(args, config_path)
        except (ConfigError, StoreError) as exc:
            print(f"mrt-tui: {exc}", file=sys.stderr)
            return 2
        except EngineAlreadyRunning as exc:
            print(f"mrt-tui: {exc} (use --attach to watch it)", file=sys.stderr)
            return 2
        from mrt_tui.app import MrtApp

        try:
            MrtApp(session, theme=args.theme, signals=signals).run()
        finally:
            session.close()  # in embedded and demo modes: the engine stops cleanly here
    if log_file and signals.received is None:  # after SIGHUP there is no terminal to tell
        print(f"mrt-tui: engine log in {log_file}")
    return 0


def _log_to_file() -> str | None:
    """The console owns the terminal: the engine's log goes to a file (secrets redacted)."""
    from pathlib import Path

    from mrt_engine.logs import setup_logging

    folder = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "mrt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stream = open(folder / "mrt-tui.log", "a", encoding="utf-8")  # noqa: SIM115 (process-long)
    except OSError:
        logging.getLogger().addHandler(logging.NullHandler())
        logging.getLogger().setLevel(logging.CRITICAL)
        return None
    setup_logging("text", "info", stream=stream)
    return stream.name


def _session(args: argparse.Namespace, config_path: str | None):
    from mrt_tui import session as sessions

    if args.demo:
        from mrt_tui.demo import DemoUpstream

        demo = DemoUpstream()
        try:
            path = demo.start()
            return sessions.embedded(
                path, mode="demo", environ={**os.environ, **demo.environ}, on_close=demo.stop
            )
        except BaseException:
            demo.stop()  # the simulators and the demo's folder go with a failed start
            raise
    if args.attach:
        if not (config_path or args.db):
            raise ConfigError(["--attach needs --config FILE or --db PATH"])
        return sessions.attached(config_path=config_path, db=args.db)
    if args.db:
        raise ConfigError(["--db is for --attach; to run the engine give --config FILE"])
    if not config_path:
        raise ConfigError(["no config given: use --config FILE, --attach, or --demo"])
    return sessions.embedded(config_path)
