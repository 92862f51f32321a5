"""The console: every action pressed as an operator would, then checked in the store."""

from __future__ import annotations

import asyncio

import pytest
from console_data import NOW, WEBHOOK_ENV, build

from mrt_engine import quarantine
from mrt_engine.config import load_config
from mrt_engine.engine import Engine
from mrt_engine.store.models import Attempt, Audit, Delivery, SourceState
from mrt_tui.app import MrtApp
from mrt_tui.session import ConsoleSession

# Every console action on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends


@pytest.fixture
def console(tmp_path, monkeypatch, welink, backend, store_state):
    """make(**build options) -> a session over a fixed store, with an opened (not started) engine.
    (On the test's backend: a module marked both_backends runs it on PostgreSQL too.)"""
    monkeypatch.setenv("MRT_TUI_SETTINGS", str(tmp_path / "tui.json"))
    sessions: list[ConsoleSession] = []
    state = store_state if backend == "postgresql" else None

    def make(**options) -> ConsoleSession:
        path = build(tmp_path, state=state, **options)
        engine = Engine(
            load_config(path), environ={WEBHOOK_ENV: welink.webhook_url}, clock=lambda: NOW
        )
        engine.open()
        session = ConsoleSession(
            engine.store, mode="embedded", engine=engine, config=engine.config, clock=lambda: NOW
        )
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def shown(widget) -> str:
    """The text a Static shows, on every Textual version we support (``content`` from Textual
    2; ``renderable`` before; ``str(render())`` of the older ones is a wrapper's repr)."""
    content = getattr(widget, "content", None)
    return str(widget.renderable if content is None else content)


async def settle(pilot, times: int = 2) -> None:
    for _ in range(times):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def select(pilot, view: str | None, key: str) -> None:
    """Switch to ``view`` (a 1-5 key; None: stay) and put the cursor on the row ``key``."""
    if view is not None:
        await pilot.press(view)
        await settle(pilot)
    table = pilot.app.screen.table
    table.move_cursor(row=table.get_row_index(key))
    await settle(pilot)


def run(coro):
    return asyncio.run(coro)


def audit_actions() -> list[str]:
    return [a.action for a in Audit.select().order_by(Audit.id)]


def test_resend_from_the_outbox_queues_the_dead_delivery_and_the_engine_sends_it(console, welink):
    session = console()
    dead = Delivery.get(Delivery.status == "dead")
    attempts_before = Attempt.select().where(Attempt.delivery == dead).count()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "2", str(dead.id))
            assert app.screen.check_action("resend", ()) is True
            await pilot.press("r")
            await settle(pilot)

    run(scenario())
    assert Delivery.get_by_id(dead.id).status == "pending"
    assert "resend" in audit_actions()
    session.engine.deliver_once()
    assert Attempt.select().where(Attempt.delivery == dead).count() == attempts_before + 1
    assert Delivery.get_by_id(dead.id).status == "sent"
    assert welink.texts()


def test_resend_is_disabled_for_a_sent_delivery(console):
    session = console()
    sent = Delivery.get(Delivery.status == "sent")

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "2", str(sent.id))
            assert app.screen.check_action("resend", ()) is None
            await pilot.press("r")
            await settle(pilot)

    run(scenario())
    assert Delivery.get_by_id(sent.id).status == "sent"
    assert "resend" not in audit_actions()


def test_requeue_dead_confirms_with_no_focused_then_requeues(console):
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("2")
            await settle(pilot)
            await pilot.press("D")
            await settle(pilot)
            assert app.screen.focused.id == "no"
            await pilot.press("enter")  # No: nothing happens
            await settle(pilot)
            assert Delivery.select().where(Delivery.status == "dead").count() == 1
            await pilot.press("D")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)

    run(scenario())
    assert Delivery.select().where(Delivery.status == "dead").count() == 0
    assert audit_actions().count("requeue_dead") == 1


def test_cursor_reset_shows_the_old_value_writes_audit_and_changes_the_cursor(console):
    session = console()
    key = "github:vllm-project/vllm:issues"

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "5", key)
            await pilot.press("X")
            await settle(pilot)
            modal = app.screen
            assert "2026-11-22T09:00:00Z" in shown(modal.query_one("#before"))
            assert modal.focused.id == "no"
            modal.query_one("#target").value = "2026-11-20T08:00:00Z"
            await settle(pilot)
            await pilot.click("#yes")
            await settle(pilot)

    run(scenario())
    row = SourceState.get_by_id(key)
    assert row.cursor != {"since": "2026-11-22T09:00:00Z"}
    assert "2026-11-20T08:00:00" in str(row.cursor)
    audit = Audit.select().where(Audit.action == "cursor_reset").get()
    assert "2026-11-22T09:00:00Z" in str(audit.before)


def test_poll_now_and_pause_from_the_sources_view(console):
    session = console()
    key = "github:sgl-project/sglang:pulls"

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "5", key)
            await pilot.press("n")
            await settle(pilot)
            await pilot.press("P")
            await settle(pilot)

    run(scenario())
    row = SourceState.get_by_id(key)
    assert row.poll_requested_at is not None and row.paused
    assert {"poll_now", "pause"} <= set(audit_actions())


def test_replay_enqueues_exactly_the_dry_run_count(console):
    # "[CI] Bump torch" and "[Bugfix] Llama-4" never matched; a new rule for "torch|llama" does.
    session = console(extra_rules=[{"name": "infra", "keywords": ["torch", "llama"]}])
    before = Delivery.select().count()
    seen = {}

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("p")
            await settle(pilot, 3)
            form = app.screen
            seen["expected"] = form.request.expected
            assert "2 deliveries would be enqueued" in shown(form.query_one("#preview"))
            await pilot.click("#run")
            await settle(pilot, 3)

    run(scenario())
    assert seen["expected"] == 2
    assert Delivery.select().count() - before == seen["expected"]
    assert "replay" in audit_actions()


def test_resend_an_event_to_a_chosen_channel(console):
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, None, "3")  # "[CI] Bump torch": never alerted
            await pilot.press("r")
            await settle(pilot)
            await pilot.press("enter")  # the only channel: welink
            await settle(pilot)

    run(scenario())
    assert Delivery.select().count() == 5
    assert "resend" in audit_actions()


def test_enter_drills_down_to_the_trace_with_every_attempt(console):
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            dead = Delivery.get(Delivery.status == "dead")
            await select(pilot, "2", str(dead.id))
            await pilot.press("enter")
            await settle(pilot, 3)
            assert app.current_mode == "trace"
            keys = app.screen.table.keys
            assert f"d{dead.id}" in keys and sum(k.startswith("a") for k in keys) >= 3

    run(scenario())


def test_the_trace_counts_one_try_in_the_singular(console):
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            once = Delivery.get(Delivery.status == "retrying")  # tried once
            await select(pilot, "2", str(once.id))
            await pilot.press("enter")
            await settle(pilot, 3)
            took = [str(cell) for cell in app.screen.table.get_row(f"d{once.id}")]
            assert "1 try" in took and "1 tries" not in took

    run(scenario())


def test_the_filter_narrows_the_feed_and_escape_clears_it(console):
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert app.screen.table.row_count == 8
            await pilot.press("slash")
            await pilot.press(*"qwen")
            await pilot.press("enter")
            await settle(pilot)
            assert app.screen.table.row_count == 2
            await pilot.press("slash")
            app.screen.query_one("#filter").value = "matched:no"
            await pilot.press("enter")
            await settle(pilot)
            assert app.screen.table.row_count == 3
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen.table.row_count == 8

    run(scenario())


def test_the_theme_choice_is_remembered(console, tmp_path):
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-light")
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            app.theme = "mrt-high-contrast"
            await settle(pilot)

    run(scenario())
    assert '"mrt-high-contrast"' in (tmp_path / "tui.json").read_text()


def test_follow_help_refresh_and_a_remapped_key(console, tmp_path):
    (tmp_path / "tui.json").write_text('{"keymap": {"outbox.requeue_dead": "ctrl+d"}}')
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.screen.follow
            await pilot.press("f")
            assert not app.screen.follow
            await pilot.press("ctrl+r", "question_mark")
            await settle(pilot)
            assert "events.resend" in str(app.screen.body)  # the help lists binding ids
            await pilot.press("escape", "2")
            await settle(pilot)
            await pilot.press("ctrl+d")  # the remapped requeue
            await settle(pilot)
            assert app.screen.__class__.__name__ == "Confirm"

    run(scenario())


def help_lines(app) -> list[str]:
    """The help screen's text, one binding a line, spaces folded."""
    return [" ".join(line.split()) for line in str(app.screen.body).splitlines()]


def test_help_lists_every_active_binding_by_its_display_key(console, tmp_path):
    (tmp_path / "tui.json").write_text('{"keymap": {"events.follow": "ctrl+f"}}')
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("question_mark")
            await settle(pilot)
            lines = help_lines(app)
            # the view's own, the ones it inherits, the table's and the app's
            for line in [
                "r Resend [events.resend]",
                "/ Filter [list.filter]",
                "esc Clear filter [list.clear_filter]",
                "j Down [table.down]",
                "? Help [app.help]",
                ": Commands [app.commands]",
                "^r Refresh [app.refresh]",
                "^f Follow [events.follow]",  # as the operator remapped it
            ]:
                assert line in lines, (line, lines)
            text = "\n".join(lines)
            assert "question_mark" not in text and "colon" not in text and "slash" not in text
            await pilot.press("escape", "2")
            await settle(pilot)
            await pilot.press("question_mark")
            await settle(pilot)
            lines = help_lines(app)
            assert "D Requeue dead [outbox.requeue_dead]" in lines, lines
            assert "/ Filter [list.filter]" in lines
            await pilot.press("escape", "ctrl+p")  # the palette, as the help and README say
            await settle(pilot)
            assert app.screen.__class__.__name__ == "CommandPalette"

    run(scenario())


def test_paging_past_the_window_reads_older_then_newer_rows(console):
    from console_data import event

    from mrt_engine.batch import commit_events

    session = console()
    with session.store.write():
        commit_events(
            session.store,
            [event(100 + i, f"filler {i}") for i in range(200)],
            session.rules,
            NOW,
        )

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, 3)
            table = app.screen.table
            newest = table.keys[:1]
            assert table.row_count == 80
            await pilot.press("G", "j")  # past the last row: the next older window
            await settle(pilot, 3)
            assert table.keys[:1] != newest and int(table.keys[0]) < int(newest[0])
            assert app.screen.before_id is not None
            await pilot.press("g", "k")  # past the first row: back up
            await settle(pilot, 3)
            assert table.keys[:1] == newest
            for view in ("4", "5"):  # views that show every row do not page
                await pilot.press(view, "G", "j", "pagedown")
                await settle(pilot)

    run(scenario())


def test_quarantined_items_show_in_the_sources_and_trace_views(console):
    session = console()
    key = "github:vllm-project/vllm:issues"
    item = quarantine.Quarantined(
        "7",
        "issue object without a valid 'created_at' timestamp",
        '{"number": 7, "title": "[bold]Qwen[/] broken"}',
        "https://github.com/vllm-project/vllm/issues/7",
    )
    with session.store.write():
        quarantine.upsert(session.store.db.cursor(), key, [item], "2026-11-22T09:00:00.000000Z")
    seen = {}

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "5", key)
            seen["cell"] = str(app.screen.table.get_cell(key, "quarantined"))
            seen["status"] = shown(app.screen.query_one("#status"))
            await pilot.press("3")
            await settle(pilot)
            await pilot.press("slash")
            await pilot.press(*"quarantine:1")
            await pilot.press("enter")
            await settle(pilot, 3)
            seen["trace"] = shown(app.screen.query_one("#event"))

    run(scenario())
    assert seen["cell"] == "1"
    assert "1 quarantined, latest 7: issue object without a valid 'created_at'" in seen["status"]
    assert "quarantined: this item did not become events" in seen["trace"]
    assert "https://github.com/vllm-project/vllm/issues/7" in seen["trace"]
    assert '"title": "[bold]Qwen[/] broken"' in seen["trace"]  # shown literally


def test_a_stop_signal_during_start_up_ends_the_console_as_soon_as_it_runs(console):
    import os
    import signal

    from mrt_tui.signals import StopSignals

    session = console()
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)  # while the engine starts: remembered, not fatal
        assert signals.received == signal.SIGTERM
        app = MrtApp(session, theme="mrt-dark", remember=False, signals=signals)
        run(app.run_async(headless=True, size=(80, 24)))  # returns: the app exited by itself
    assert not app.is_running


def test_the_console_writes_its_settings_file_only_when_the_operator_changes_a_setting(
    console, tmp_path
):
    session = console()
    settings = tmp_path / "tui.json"

    async def scenario():
        app = MrtApp(session, theme="mrt-light")  # --theme: for this run only
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert not settings.exists()  # opening the console writes nothing
            app.theme = "mrt-high-contrast"  # the operator's choice (command palette)
            await settle(pilot)
            assert settings.exists()
            assert any(str(settings) in str(n.message) for n in app._notifications)

    run(scenario())
    assert '"mrt-high-contrast"' in settings.read_text()


def test_an_unknown_theme_is_a_usage_error_naming_the_themes(capsys):
    from mrt_tui.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--demo", "--theme", "solarised"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown theme 'solarised'" in err
    assert all(name in err for name in ("mrt-dark", "mrt-light", "mrt-high-contrast"))


def test_help_says_where_the_settings_file_is_and_how_to_remap_keys():
    from mrt_tui.cli import build_parser

    text = build_parser().format_help()
    assert "MRT_TUI_SETTINGS" in text and "~/.config/mrt/tui.json" in text
    assert '"keymap"' in text and "binding id" in text


def test_help_says_the_attached_store_may_be_a_postgresql_url_and_where_its_password_is():
    from mrt_tui.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "path or URL" in text and "postgresql://user@host/db" in text
    assert "PGPASSWORD" in text and "state.password_env" in text


@pytest.mark.postgresql_only
def test_attached_to_a_postgresql_store_by_its_url_or_by_a_config(
    tmp_path, monkeypatch, backend, store_state
):
    import pg_cluster

    from mrt_tui import session as sessions

    monkeypatch.setenv("MRT_TUI_SETTINGS", str(tmp_path / "tui.json"))
    config = build(tmp_path, state=store_state)
    monkeypatch.setenv("PGPASSWORD", pg_cluster.PASSWORD)  # libpq's own, for a bare URL
    for attach in (
        lambda: sessions.attached(db=store_state["url"]),
        lambda: sessions.attached(config_path=config),
    ):
        session = attach()
        try:
            assert session.store.is_postgresql and session.mode == "attach"
            assert session.describe() == f"attached to {store_state['url']}"

            async def scenario(session=session):
                app = MrtApp(session, theme="mrt-dark", remember=False)
                async with app.run_test(size=(120, 40)) as pilot:
                    await settle(pilot)
                    assert len(app.screen.table.keys) == 8
                    await pilot.press("slash", *"qwen3 type:pr_*", "enter")
                    await settle(pilot)
                    titles = [str(app.screen.table.get_row_at(i)[3]) for i in range(1)]
                    assert titles == ["[Perf] Faster MoE routing for Qwen3-235B"]
                    assert len(app.screen.table.keys) == 1

            run(scenario())
        finally:
            session.close()


def test_the_health_view_opens_by_key_7_and_from_the_palette_and_help_lists_it(console):
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("question_mark")
            await settle(pilot)
            assert "7 Health [app.health]" in help_lines(app)
            await pilot.press("escape", "7")
            await settle(pilot)
            assert app.current_mode == "health" and app.screen.TITLE == "Health"
            await pilot.press("1")
            await settle(pilot)
            await pilot.press("ctrl+p")
            await settle(pilot)
            await pilot.press(*"go to health", "enter")
            await settle(pilot)
            assert app.current_mode == "health"

    run(scenario())
