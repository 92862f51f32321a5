"""``mrt-engine``: the command line (parsing, the v0 form, exit statuses); what each subcommand
does is in :mod:`mrt_engine.commands`.

Exit status: 0 all well, 1 a source or delivery failed (or an operation could not be done),
2 a usage or config error. Errors are one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mrt_engine import commands
from mrt_engine.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE


# ---------------------------------------------------------------------- parser
def _count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[low, high]`` (SQLite's integers end at 2**63)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {text!r}"
            )
        return value

    return parse


def _option_parents(default: object) -> tuple[argparse.ArgumentParser, ...]:
    """The options every subcommand shares (config, store, JSON, logging) as parent parsers.

    The top level takes them with real defaults and the subcommands with ``SUPPRESS``, so they
    may stand on either side of the subcommand: a subcommand that was not given an option does
    not overwrite what the top level parsed (``mrt-engine --config X status``).
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=default,
        help="config file, JSON or TOML (or $MRT_CONFIG)",
    )
    store_opts = argparse.ArgumentParser(add_help=False, parents=[common])
    store_opts.add_argument(
        "--db",
        metavar="PATH",
        default=default,
        help="open this store instead of the config's state.sqlite_path",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="print JSON",
    )
    log_opts = argparse.ArgumentParser(add_help=False)
    log_opts.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=default,
        help="log format (default: config log.format)",
    )
    log_opts.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=default
    )
    return common, store_opts, as_json, log_opts


def build_parser() -> argparse.ArgumentParser:
    common, store_opts, as_json, log_opts = _option_parents(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="mrt-engine",
        description="Model Release Tracker engine: polls upstreams, matches rules, delivers alerts.",
        parents=list(_option_parents(None)[1:]),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", parents=[common, log_opts], help="run the tracker (daemon, or --once for cron)"
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="poll every source once, try every due delivery once, exit",
    )
    run.add_argument(
        "--metrics-port",
        type=_count(1, 65535),
        metavar="N",
        help="serve Prometheus metrics on this port (127.0.0.1 unless observability.prometheus"
        " names an address)",
    )
    run.set_defaults(func=commands.cmd_run)

    check = sub.add_parser(
        "check", parents=[common], help="validate the config and the secrets it names"
    )
    check.set_defaults(func=commands.cmd_check)

    status = sub.add_parser(
        "status", parents=[store_opts, as_json], help="sources, cursors, last errors, outbox counts"
    )
    status.set_defaults(func=commands.cmd_status)

    metrics = sub.add_parser(
        "metrics",
        parents=[store_opts, as_json],
        help="polls, HTTP answers, retries per source; sends, failures, queue per channel",
    )
    metrics.add_argument(
        "--since", default="24h", metavar="T", help="ISO time or age (default 24h); 'all': all kept"
    )
    metrics.set_defaults(func=commands.cmd_metrics)

    outbox = sub.add_parser("outbox", parents=[store_opts, as_json], help="list deliveries")
    outbox.add_argument("--status", help="pending, retrying, sent or dead")
    outbox.add_argument("--channel")
    outbox.add_argument("--limit", type=_count(1, 100_000), default=50, help="rows (default 50)")
    outbox.set_defaults(func=commands.cmd_outbox)

    trace = sub.add_parser(
        "trace",
        parents=[store_opts, as_json],
        help="event -> rule hits -> alert -> deliveries -> attempts",
    )
    trace.add_argument(
        "ref",
        metavar="FINGERPRINT|URL",
        help="a fingerprint (or prefix), an event URL, event:ID or delivery:ID",
    )
    trace.set_defaults(func=commands.cmd_trace)

    preview = sub.add_parser(
        "preview",
        parents=[store_opts],
        help="show what a channel would send for an event, without sending it",
    )
    preview.add_argument("--channel", required=True, help="a channel configured under notify")
    preview.add_argument(
        "--ai",
        action="store_true",
        help="with the optional AI on: ask the model for the summary now (else only one it "
        "already wrote is shown)",
    )
    preview.add_argument(
        "ref",
        metavar="FINGERPRINT",
        help="a fingerprint (or a unique prefix), an event URL, event:ID or delivery:ID",
    )
    preview.set_defaults(func=commands.cmd_preview)

    resend = sub.add_parser(
        "resend", parents=[store_opts], help="send a delivery again, or requeue dead ones"
    )
    resend.add_argument("delivery_id", nargs="?", type=int, metavar="DELIVERY_ID")
    resend.add_argument("--dead", action="store_true", help="requeue every dead delivery")
    resend.add_argument("--channel", help="with --dead: only this channel")
    resend.set_defaults(func=commands.cmd_resend)

    replay = sub.add_parser(
        "replay", parents=[common, as_json], help="re-evaluate stored events with the current rules"
    )
    replay.add_argument(
        "--since",
        required=True,
        metavar="T",
        help="ISO time (2026-11-01, 2026-11-01T08:00Z) or age (2h, 3d)",
    )
    replay.add_argument("--until", metavar="T")
    replay.add_argument(
        "--source", metavar="KEY", help="source key, globs allowed (github:vllm-project/*)"
    )
    replay.add_argument("--channel", help="only enqueue to this channel")
    replay.add_argument("--dry-run", action="store_true", help="only show what would be enqueued")
    replay.set_defaults(func=commands.cmd_replay)

    rules = sub.add_parser("rules", help="rule tools (suggest keywords from past hits)")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    suggest = rules_sub.add_parser(
        "suggest",
        parents=[common, as_json],
        help="propose keywords for each notify rule from the titles of its past hits",
    )
    suggest.add_argument("--rule", action="append", metavar="NAME", help="only this rule")
    suggest.add_argument("--limit", type=_count(1, 100), default=10, help="per rule (default 10)")
    suggest.set_defaults(func=commands.cmd_rules_suggest)

    export = sub.add_parser(
        "export", parents=[store_opts], help="write a source's current model/version list"
    )
    export.add_argument(
        "--source", required=True, metavar="KEY", help="e.g. modelscope:Qwen:models"
    )
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--output", "-o", metavar="FILE", help="default: standard output")
    export.set_defaults(func=commands.cmd_export)

    diff = sub.add_parser(
        "diff", parents=[store_opts, as_json], help="what a source added, updated and removed"
    )
    diff.add_argument("--source", required=True, metavar="KEY")
    diff.add_argument("--since", required=True, metavar="TIME", help="ISO time or an age like 7d")
    diff.set_defaults(func=commands.cmd_diff)

    cursor = sub.add_parser("cursor", parents=[store_opts, as_json], help="list or reset cursors")
    cursor_sub = cursor.add_subparsers(dest="cursor_command", metavar="list|reset", required=True)
    cursor_list = cursor_sub.add_parser(
        "list", parents=[store_opts, as_json], help="every source key and its cursor"
    )
    cursor_list.set_defaults(func=commands.cmd_cursor)
    reset = cursor_sub.add_parser(
        "reset", parents=[store_opts], help="move a cursor (the old value goes to the audit log)"
    )
    reset.add_argument("key", metavar="KEY")
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="T", help="report what changed after T on the next poll")
    target.add_argument(
        "--initial",
        action="store_true",
        help="forget the cursor: the next poll takes a new baseline",
    )
    reset.set_defaults(func=commands.cmd_cursor)

    source = sub.add_parser(
        "source", parents=[store_opts], help="pause, resume or poll a source now"
    )
    source_sub = source.add_subparsers(
        dest="source_command", metavar="pause|resume|poll", required=True
    )
    for name, text in (
        ("pause", "stop polling KEY"),
        ("resume", "poll KEY again"),
        ("poll", "ask the running engine to poll KEY now"),
    ):
        p = source_sub.add_parser(name, parents=[store_opts], help=text)
        p.add_argument("key", metavar="KEY")
        p.set_defaults(func=commands.cmd_source)
    incidents = sub.add_parser(
        "incidents",
        parents=[store_opts, as_json],
        help="model families seen across sources: each incident with its timeline",
    )
    incidents.add_argument(
        "--limit", type=_count(1, 100_000), default=20, help="incidents (default 20)"
    )
    incidents.add_argument(
        "--events",
        type=_count(1, 100_000),
        default=50,
        help="events of each incident's timeline, first seen first (default 50)",
    )
    incidents.set_defaults(func=commands.cmd_incidents)

    silence = sub.add_parser(
        "silence",
        parents=[store_opts, as_json],
        help="stop deliveries that match, for a time (add, list, expire)",
    )
    silence_sub = silence.add_subparsers(
        dest="silence_command", metavar="add|list|expire", required=True
    )
    add = silence_sub.add_parser(
        "add",
        parents=[store_opts, as_json],
        help="silence what matches every --match, for a time",
        description="Fields: source (source key; a value without wildcards is a prefix),"
        " org, repo, rule, type, text (title and summary, substring). FIELD=GLOB,"
        " FIELD=~REGEX, or their negations FIELD!=GLOB and FIELD!~REGEX (a field a hit"
        " lacks matches those). Silenced deliveries are stored as silenced, never dropped.",
    )
    add.add_argument(
        "--match",
        "-m",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="e.g. source=github:vllm, org=deepseek-ai, rule=NAME, type=model_updated,"
        " text=~'fp8|int4', source!=github (repeatable: all must match)",
    )
    length = add.add_mutually_exclusive_group()
    length.add_argument("--for", dest="duration", metavar="DURATION", help="2h, 30m, 3d")
    length.add_argument("--until", metavar="T", help="ISO time it ends (2026-11-21T08:00Z)")
    add.add_argument("--starts", metavar="T", help="ISO time it starts (default: now)")
    add.add_argument("--author", help="who asks for the silence (required)")
    add.add_argument("--comment", help="why (required)")
    silence_list = silence_sub.add_parser(
        "list", parents=[store_opts, as_json], help="the silences in force (--all: ended too)"
    )
    silence_list.add_argument("--all", action="store_true", help="also the ended ones")
    expire = silence_sub.add_parser(
        "expire",
        parents=[store_opts],
        help="end a silence now (what it silenced stays silenced)",
    )
    expire.add_argument("silence_id", type=_count(1, 2**63 - 1), metavar="ID")
    expire.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    for child in silence_sub.choices.values():
        child.set_defaults(func=commands.cmd_silence)

    doctor = sub.add_parser(
        "doctor",
        parents=[common, as_json],
        help="check that this deployment can run: config, secrets, store, disk, clock",
    )
    doctor.add_argument(
        "--network", action="store_true", help="also ask each source's API and channel endpoint"
    )
    doctor.add_argument(
        "--send-test", action="store_true", help="also send each channel one test message"
    )
    doctor.set_defaults(func=commands.cmd_doctor)

    migrate = sub.add_parser(
        "migrate",
        parents=[store_opts, as_json],
        help="bring the store's schema to this version (run does it too)",
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="only report the schema version and the pending migrations, changing nothing"
        " (exit 0 up to date, 1 migrations pending, 2 the store cannot be read or is newer)",
    )
    migrate.set_defaults(func=commands.cmd_migrate)

    store = sub.add_parser(
        "store", parents=[store_opts, as_json], help="prune old rows, show sizes, give space back"
    )
    store_sub = store.add_subparsers(
        dest="store_command", metavar="prune|stats|vacuum|copy", required=True
    )
    prune = store_sub.add_parser(
        "prune",
        parents=[store_opts, as_json],
        help="forget what config retention lets go (the running engine does it daily)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    store_sub.add_parser(
        "stats", parents=[store_opts, as_json], help="rows and bytes per table, file sizes"
    )
    store_sub.add_parser(
        "vacuum", parents=[store_opts], help="give free pages back to the disk (no engine running)"
    )
    for child in store_sub.choices.values():
        child.set_defaults(func=commands.cmd_store)
    copy = store_sub.add_parser(
        "copy",
        parents=[store_opts, as_json],
        help="copy the store into another, SQLite or PostgreSQL (to move it)",
    )
    copy.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the store to copy: sqlite:///path, a path, or postgresql://user@host/db"
        " (default: --db, or the config's store)",
    )
    copy.add_argument(
        "--to", dest="target", metavar="URL", required=True, help="where to copy it (created)"
    )
    copy.add_argument(
        "--from-password-env",
        metavar="VAR",
        help="the variable holding the source's PostgreSQL password (default: the config's"
        " state.password_env, else PGPASSWORD or ~/.pgpass)",
    )
    copy.add_argument("--to-password-env", metavar="VAR", help="the same for the target's password")
    copy.add_argument(
        "--replace",
        action="store_true",
        help="empty a target that holds data first (its data is lost); without it such a"
        " target is refused: stores are never merged",
    )
    copy.add_argument(
        "--batch", type=_count(1, 1_000_000), default=5000, help="rows a batch (default 5000)"
    )
    copy.set_defaults(func=commands.cmd_store_copy)
    _note_accepted_options(parser)
    return parser


def _note_accepted_options(parser: argparse.ArgumentParser) -> None:
    """Give each runnable subcommand its name and the options it takes (see :func:`_misplaced`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _note_accepted_options(child)
            return
    parser.set_defaults(
        _command=parser.prog.removeprefix("mrt-engine "),
        _accepts=frozenset(a.dest for a in parser._actions if a.option_strings),
    )


def _misplaced(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """An option given before a subcommand that does not take it (``--json run``)."""
    accepts = getattr(args, "_accepts", frozenset())
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", *accepts):
            continue
        if getattr(args, action.dest, action.default) != action.default:
            return f"{action.option_strings[0]} does not apply to {args._command}"
    return None


def _v0_args(argv: Sequence[str]) -> list[str] | None:
    """``--config X --once|--daemon`` (the v0 form) as ``run --config X [--once]``."""
    if any(a in ("--once", "--daemon") for a in argv) and not any(
        a in {"run", "check", "status"} for a in argv
    ):
        return ["run", *[a for a in argv if a != "--daemon"]]
    return None


# The errors a command ends with on purpose: (module, class, message and exit status). They are
# named, not imported: their modules import pydantic, peewee and httpx, which `--help` and argument
# errors do without (tests/test_startup.py), and an error can only come from a module that was
# imported, so matching one never imports anything. The first match wins.
_KNOWN_ERRORS: tuple[tuple[str, str, Callable[[Any], tuple[str, int]]], ...] = (
    ("mrt_engine.config", "ConfigError", lambda e: (e.report(), EXIT_USAGE)),
    ("mrt_engine.commands", "UsageError", lambda e: (f"mrt-engine: {e}", EXIT_USAGE)),
    ("mrt_engine.store.lock", "EngineAlreadyRunning", lambda e: (f"mrt-engine: {e}", EXIT_USAGE)),
    ("mrt_engine.store.db", "StoreError", lambda e: (f"mrt-engine: {e}", EXIT_USAGE)),
    ("mrt_engine.silence", "SilenceError", lambda e: (f"mrt-engine: {e}", EXIT_USAGE)),
    ("mrt_engine.operations", "OperationError", lambda e: (f"mrt-engine: {e}", EXIT_FAILED)),
    ("mrt_engine.prometheus", "ExporterError", lambda e: (f"mrt-engine: {e}", EXIT_USAGE)),
)


def _known_error(exc: Exception) -> tuple[str, int] | None:
    """The message and exit status of an error a command ends with on purpose, else ``None``."""
    for module, name, answer in _KNOWN_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return answer(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args_list = _v0_args(args_list) or args_list
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    problem = _misplaced(parser, args)
    if problem:
        parser.error(problem)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        known = _known_error(exc)
        if known is None:
            raise
        message, code = known
        _report(message)
        return code


def _report(message: str) -> None:
    """The one line a command ends with on stderr; a JSON log line when the command logs JSON
    (a log shipper reads every line of a ``run --log-format json`` as an object)."""
    logs = sys.modules.get("mrt_engine.logs")  # imported only by commands that log
    if logs is not None and logs.logs_as_json():
        logging.getLogger("mrt_engine").error("%s", message)
    else:
        print(message, file=sys.stderr)
