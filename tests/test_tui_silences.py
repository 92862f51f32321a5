"""The console's Silences view and the silence drafts of the Events, Rules and Trace views,
pressed as an operator would, then checked in the store."""

from __future__ import annotations

import pytest

# The console fixture (a test parameter of the same name: F811) and its helpers.
from test_tui import audit_actions, console, run, select, settle  # noqa: F401

from mrt_engine.store.models import Audit, Event, Silence
from mrt_tui.app import MrtApp
from mrt_tui.screens.silence_form import SilenceForm
from mrt_tui.screens.silences import SilencesScreen

pytestmark = pytest.mark.both_backends


def test_key_6_shows_the_silences_in_force_and_a_the_ended_ones(console):  # noqa: F811
    session = console(with_silences=True)

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("6")
            await settle(pilot)
            assert isinstance(app.screen, SilencesScreen)
            assert app.screen.table.keys == ["1", "2"]
            await pilot.press("a")
            await settle(pilot)
            assert app.screen.table.keys == ["1", "2", "3"]

    run(scenario())


def test_s_on_an_event_drafts_a_silence_and_enter_creates_it(console, monkeypatch):  # noqa: F811
    monkeypatch.setenv("LOGNAME", "operator")
    session = console()
    event = Event.get(Event.title == "[Bug] Qwen3 tokenizer crash on empty prompt")

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "1", str(event.id))
            await pilot.press("s")
            await settle(pilot)
            form = app.screen
            assert isinstance(form, SilenceForm)
            values = {i.id: i.value for i in form.query("Input")}
            assert values["matchers"] == (
                "source=github:vllm-project/vllm:issues org=vllm-project type=issue_opened"
                " rule=qwen"
            )
            assert values["duration"] == "2h" and values["author"] == "operator"
            await pilot.press("enter")  # no comment yet: refused, the form stays
            await settle(pilot)
            assert app.screen is form and Silence.select().count() == 0
            await pilot.press(*"tokenizer fix is out")
            await pilot.press("enter")
            await settle(pilot)
            assert not isinstance(app.screen, SilenceForm)

    run(scenario())
    [silence] = Silence.select()
    assert [m["value"] for m in silence.matchers] == [
        "github:vllm-project/vllm:issues",
        "vllm-project",
        "issue_opened",
        "qwen",
    ]
    assert (silence.author, silence.comment) == ("operator", "tokenizer fix is out")
    assert (silence.ends_at - silence.starts_at).total_seconds() == 7200
    [audit] = Audit.select().where(Audit.action == "silence_add")
    assert audit.actor.endswith("via tui") and audit.target == f"silence:{silence.id}"


def test_s_on_a_rule_drafts_a_silence_of_its_hits(console):  # noqa: F811
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "4", "deepseek")
            await pilot.press("s")
            await settle(pilot)
            assert isinstance(app.screen, SilenceForm)
            assert app.screen.query_one("#matchers").value == "rule=deepseek"

    run(scenario())


def test_the_form_takes_negative_matchers(console):  # noqa: F811
    session = console()

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "4", "deepseek")
            await pilot.press("s")
            await settle(pilot)
            app.screen.query_one("#matchers").value = "rule=deepseek source!=github text!~fp8"
            await pilot.press(*"not the github ones")
            await pilot.press("enter")
            await settle(pilot)
            assert not isinstance(app.screen, SilenceForm)

    run(scenario())
    [silence] = Silence.select()
    assert [(m["field"], m["op"], m["value"]) for m in silence.matchers] == [
        ("rule", "=", "deepseek"),
        ("source", "!=", "github"),
        ("text", "!~", "fp8"),
    ]
    assert Audit.select().where(Audit.action == "silence_add").count() == 1


def test_x_asks_then_expires_the_selected_silence_and_writes_audit(console):  # noqa: F811
    session = console(with_silences=True)

    async def scenario():
        app = MrtApp(session, theme="mrt-dark", remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await select(pilot, "6", "1")
            await pilot.press("x")
            await settle(pilot)
            await pilot.press("enter")  # "No" has the focus: nothing happens
            await settle(pilot)
            assert Silence.get_by_id(1).expired_at is None
            await pilot.press("x")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)
            assert app.screen.table.keys == ["2"]
            assert app.screen.check_action("expire_silence", ()) is True

    run(scenario())
    assert Silence.get_by_id(1).expired_at is not None
    assert audit_actions().count("silence_expire") == 2  # the data's own, and this one
