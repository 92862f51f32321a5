"""Message templates (F4): locales, operator template files, the platform's key fields in every
message, and every channel's length limit with the link kept."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GH_TOKEN

from mrt_engine import notify
from mrt_engine.config import ConfigError, load_config
from mrt_engine.notify.locales import EN, ZH
from mrt_engine.notify.message import MessageContext, render
from mrt_engine.simulators.dockerhub import DockerHubSimulator
from mrt_engine.simulators.feeds import FeedSimulator
from mrt_engine.simulators.modelhub import ModelHubSimulator
from mrt_engine.simulators.osv import OsvSimulator
from mrt_engine.simulators.pypi import PyPISimulator

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
URL = "https://github.com/vllm-project/vllm/pull/7"


class Settings:
    """What render() reads of a channel's settings."""

    def __init__(self, locale: str = "en", template: str | None = None) -> None:
        self.locale = locale
        self.message_template = template


def context(**changes) -> MessageContext:
    values = dict(
        event_type="pr_merged",
        source_key="github:vllm-project/vllm:pulls",
        resource_id=REPO,
        title="Support DeepSeek-V3.2",
        url=URL,
        fingerprint="a" * 64,
        summary="Adds sparse attention.",
        author="octocat",
        labels=("new-model",),
        rules=("deepseek",),
        reasons=('keyword "DeepSeek" in title',),
        fields=(("author", "octocat"), ("labels", "new-model"), ("merged", True)),
    )
    values.update(changes)
    return MessageContext(**values)


# ---------------------------------------------------------------------- locales
@pytest.mark.parametrize("locale", ["en", "zh"])
@pytest.mark.parametrize("event_type", sorted(EN.headlines))
def test_every_event_type_renders_in_both_locales(locale, event_type):
    words = {"en": EN, "zh": ZH}[locale]
    text = render(context(event_type=event_type), None, Settings(locale))
    first = text.splitlines()[0]
    assert words.headlines[event_type] in first
    assert first.startswith("[MRT] " if locale == "en" else "【MRT】")
    assert f"{words.labels['matched']}{': ' if locale == 'en' else '：'}deepseek" in text
    assert text.endswith(URL)


def test_every_headline_and_field_name_has_a_chinese_word():
    assert set(ZH.headlines) == set(EN.headlines)
    assert set(ZH.labels) == set(EN.labels)
    assert all(word != EN.headlines[k] for k, word in ZH.headlines.items())


def test_the_chinese_message_reads_in_chinese_fixed_words():
    text = render(context(), None, Settings("zh"))
    assert text.splitlines() == [
        "【MRT】PR 已合并 · vllm-project/vllm",
        "Support DeepSeek-V3.2",
        '命中规则：deepseek (keyword "DeepSeek" in title)',
        "作者：octocat · 标签：new-model · 已合并：是",
        "Adds sparse attention.",
        URL,
    ]


def test_the_english_message_names_its_key_fields():
    text = render(context(), None, Settings("en"))
    assert "Author: octocat · Labels: new-model · Merged: yes" in text.splitlines()


def test_a_message_an_operator_sent_says_so_in_its_locale():
    assert "命中规则：由操作员手动发送" in render(
        context(rules=(), reasons=()), None, Settings("zh")
    )
    assert "Matched: sent by an operator" in render(context(rules=(), reasons=()), None)


# ---------------------------------------------------------------------- untrusted text
HOSTILE = "{{ 7*7 }} {% for x in range(3) %}boom{% endfor %} {{ ''.__class__ }}"


@pytest.mark.parametrize("locale", ["en", "zh"])
def test_a_hostile_title_labels_author_and_field_stay_literal(locale):
    hostile = context(
        title=HOSTILE,
        author="{{ config }}",
        labels=("{% raw %}", "{{ 6*7 }}"),
        summary="\x1b[31mred\x1b[0m \u202eevil",
        fields=(
            ("author", "{{ config }}"),
            ("labels", "{% raw %}, {{ 6*7 }}"),
            ("pipeline_tag", "{{ ''.__class__.__mro__ }}"),
        ),
    )
    text = render(hostile, None, Settings(locale))
    assert HOSTILE in text
    assert "{{ config }}" in text and "{% raw %}, {{ 6*7 }}" in text
    assert "{{ ''.__class__.__mro__ }}" in text
    assert "49" not in text and "42" not in text and "boom" not in text.replace(HOSTILE, "")
    assert "\x1b" not in text and "\u202e" not in text


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ title.__class__.__mro__[1].__subclasses__() }}",
        "{{ fields.__init__.__globals__ }}",
        "{{ words.__class__ }}",
    ],
)
def test_an_operator_template_cannot_reach_attributes_and_the_alert_still_goes_out(template):
    text = render(context(), 500, Settings("zh", template))
    assert text.startswith("【MRT】PR 已合并")  # the built-in message, in the channel's locale
    assert "(template error" in text and "SecurityError" in text
    assert "Traceback" not in text and "<class" not in text
    assert URL in text and len(text) <= 500


# ---------------------------------------------------------------------- config
def write_config(tmp_path, welink_section: dict, where: str = "conf"):
    directory = tmp_path / where
    directory.mkdir(exist_ok=True)
    path = directory / "mrt.json"
    path.write_text(json.dumps({"notify": {"welink": welink_section}}))
    return path


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_a_template_file_is_read_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the config's directory
    path = write_config(tmp_path, {"template_file": "templates/alert.j2", "locale": "zh"})
    (tmp_path / "conf" / "templates").mkdir()
    (tmp_path / "conf" / "templates" / "alert.j2").write_text(
        "{{ headline }}|{{ field.merged }}|{{ field.pipeline_tag }}|{{ title }}\n{{ url }}",
        encoding="utf-8",
    )
    settings = load_config(path).notify.welink
    assert render(context(), None, settings) == f"PR 已合并|是||Support DeepSeek-V3.2\n{URL}"


def test_a_missing_template_file_is_a_config_error_naming_the_key(tmp_path):
    path = write_config(tmp_path, {"template_file": "nope.j2"})
    assert problems(path) == [
        f"notify.welink.template_file: file not found: {tmp_path / 'conf' / 'nope.j2'}"
    ]


def test_a_template_file_with_a_syntax_error_names_the_key_and_the_line(tmp_path):
    path = write_config(tmp_path, {"template_file": "bad.j2"})
    (tmp_path / "conf" / "bad.j2").write_text("{{ title }}\n{{ url }\n")
    (problem,) = problems(path)
    assert problem.startswith("notify.welink.template_file: ")
    assert "bad.j2: template syntax error at line 2" in problem


def test_a_template_file_naming_an_unknown_variable_is_a_config_error_with_its_line(tmp_path):
    path = write_config(tmp_path, {"template_file": "typo.j2"})
    (tmp_path / "conf" / "typo.j2").write_text("{{ title }}\n\n{{ titel }}\n")
    (problem,) = problems(path)
    assert problem.startswith("notify.welink.template_file: ")
    assert "template error at line 3: UndefinedError: 'titel' is undefined" in problem


def test_an_inline_template_reaching_for_attributes_is_refused_at_config_load(tmp_path):
    path = write_config(tmp_path, {"template": "{{ ''.__class__ }}"})
    (problem,) = problems(path)
    assert problem.startswith("notify.welink.template: template error at line 1: SecurityError")


def test_template_and_template_file_are_mutually_exclusive(tmp_path):
    path = write_config(tmp_path, {"template": "{{ title }}", "template_file": "t.j2"})
    (tmp_path / "conf" / "t.j2").write_text("{{ url }}")
    assert problems(path) == [
        "notify.welink: template and template_file: give one of them, not both"
    ]


def test_an_unknown_locale_is_a_config_error(tmp_path):
    path = write_config(tmp_path, {"locale": "fr"})
    assert problems(path) == ["notify.welink.locale: expected one of 'en' or 'zh', got \"fr\""]


def test_the_built_in_templates_ship_as_package_data():
    from importlib import resources

    from mrt_engine.notify.message import BUILT_IN

    files = resources.files("mrt_engine.notify") / "templates"
    assert {f.name for f in files.iterdir() if f.name.endswith(".j2")} == {
        "default.en.j2",
        "default.zh.j2",
    }
    assert set(BUILT_IN) == {"en", "zh"}


# ---------------------------------------------------------------------- length limits
def channel_modules() -> list:
    """Every registered channel kind's module."""
    return [importlib.import_module(kind.build.__module__) for kind in notify.kinds().values()]


def test_every_channel_module_declares_its_length_limits():
    for module in channel_modules():
        assert hasattr(module, "MAX_TEXT"), f"{module.__name__} has no MAX_TEXT"
        assert hasattr(module, "MAX_BYTES"), f"{module.__name__} has no MAX_BYTES"


@pytest.mark.parametrize("locale", ["en", "zh"])
def test_every_channel_limit_is_kept_with_the_link(locale):
    huge = context(
        title="深度求索 DeepSeek 模型支持 " * 300,
        summary="摘要 summary " * 3000,
        labels=tuple(f"标签{i}" for i in range(200)),
        fields=(
            ("author", "作者" * 200),
            ("labels", ", ".join(f"标签{i}" for i in range(200))),
            ("merged", True),
        ),
        rules=tuple(f"rule{i}" for i in range(30)),
        reasons=tuple("keyword 深度求索 in title " * 5 for _ in range(30)),
    )
    checked = 0
    for module in channel_modules():
        chars, octets = module.MAX_TEXT, module.MAX_BYTES
        text = render(huge, chars, Settings(locale), limit_bytes=octets)
        if chars is not None:
            assert len(text) <= chars, module.__name__
        if octets is not None:
            assert len(text.encode("utf-8")) <= octets, module.__name__
        assert text.endswith(URL), module.__name__
        checked += chars is not None or octets is not None
    assert checked >= 1  # WeLink at least


def test_a_welink_payload_with_mentions_stays_within_500_characters_in_chinese(tmp_path):
    from mrt_engine.notify.base import ChannelContext, Outgoing
    from mrt_engine.notify.welink import KIND, WeLinkSettings
    from mrt_engine.secrets import SecretResolver

    settings = WeLinkSettings(locale="zh", is_at_all=True, at_accounts=["zhangsan@corp"])
    resolver = SecretResolver({"WELINK_WEBHOOK_URL": "https://welink.invalid/x?token=t0ken123"})
    channel = KIND.build(settings, ChannelContext(resolver, 5.0))
    try:
        huge = context(title="深度求索" * 400, summary="摘要" * 2000)
        text = channel.payload(Outgoing(1, 1, huge))["content"]["text"]
    finally:
        channel.close()
    assert len(text) <= 500 and text.endswith(URL)
    assert text.startswith("@all @zhangsan@corp 【MRT】PR 已合并")


# ---------------------------------------------------------------------- key fields, end to end
@pytest.fixture
def upstreams() -> Iterator[dict]:
    sims = {
        "pypi": PyPISimulator(),
        "docker": DockerHubSimulator(),
        "osv": OsvSimulator(),
        "hub": ModelHubSimulator(),
        "feeds": FeedSimulator(),
    }
    for sim in sims.values():
        sim.start()
    yield sims
    for sim in sims.values():
        sim.stop()


@pytest.mark.both_backends
def test_every_platform_sends_its_key_fields(
    make_tracker, github, hf, modelscope, welink, upstreams
):
    """Events made by the real sources from the simulators, stored, claimed and sent to WeLink:
    each message carries its platform's key fields."""
    pypi, docker, osv, hub, feeds = (
        upstreams[k] for k in ("pypi", "docker", "osv", "hub", "feeds")
    )
    pypi.release("vllm", "0.6.0", at=T0)
    docker.push("vllm/vllm-openai", "v0.6.0", at=T0)
    feed = feeds.feed("blog", title="Qwen blog")
    tracker = make_tracker(
        {
            "sources": {
                "github": {
                    "repos": [REPO],
                    "token_env": "GH",
                    "api_base": github.url,
                    "monitor": {"issues": True, "pulls": True, "releases": True},
                },
                "huggingface": {"orgs": ["deepseek-ai"], "api_base": hf.url},
                "modelscope": {"orgs": ["Qwen"], "api_base": modelscope.url},
                "pypi": {"packages": ["vllm"], "api_base": pypi.url},
                "docker": {"images": ["vllm/vllm-openai"], "api_base": docker.url},
                "osv": {"packages": ["vllm"], "api_base": osv.url},
                "modelhub": {"api_base": hub.url},
                "feeds": [{"name": "qwen-blog", "url": feed}],
            },
            "rules": [{"name": "everything"}],
            "notify": {"welink": {"webhook_env": "WL"}},
        },
        {"GH": GH_TOKEN, "WL": welink.webhook_url},
    )
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()  # every baseline
    assert welink.texts() == []

    later = datetime.now(UTC) + timedelta(seconds=1)
    github.add_issue(REPO, "Fix MoE", pull=True, labels=("bug", "moe"), user="alice", at=later)
    github.close(REPO, 2, merged=True, at=later)
    github.add_issue(REPO, "Try Qwen3", pull=True, user="bob", at=later)
    github.update(REPO, 3, draft=True, at=later)
    github.add_issue(REPO, "Abandoned", pull=True, user="carol", at=later)
    github.close(REPO, 4, merged=False, at=later)
    github.add_release(REPO, "v0.7.0rc1", prerelease=True, at=later)
    hf.put_model("deepseek-ai/DeepSeek-V4", pipeline_tag="text-generation", library_name="vllm")
    modelscope.put_model("Qwen/Qwen4", tasks=("text-generation",), tags=("moe",))
    pypi.release("vllm", "0.7.0rc1", yanked=True)
    docker.push("vllm/vllm-openai", "v0.7.0")
    osv.publish(
        "vllm",
        "GHSA-xxxx-yyyy",
        "RCE in the server",
        severity="CRITICAL",
        cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        aliases=("CVE-2026-0001",),
    )
    hub.publish("translate", "2.0.0", stable=True)
    feeds.add_entry("blog", "Qwen4 is out")
    tracker.once()

    texts = welink.texts()

    def message(*markers: str) -> str:
        found = [t for t in texts if all(m in t for m in markers)]
        assert len(found) == 1, f"{len(found)} messages with {markers!r} in {texts}"
        return found[0]

    assert "Author: alice · Labels: bug, moe\n" in message("New PR", "Fix MoE")
    merged = message("PR merged", "Fix MoE")
    assert "Author: alice · Labels: bug, moe · Merged: yes" in merged
    assert "Author: carol · Merged: no\n" in message("PR closed", "Abandoned")
    assert "Author: bob · Draft: yes\n" in message("New PR", "Try Qwen3")
    assert "Tag: v0.7.0rc1 · Pre-release: yes · Author: release-bot" in message("Release published")
    assert "Pipeline: text-generation · Library: vllm" in message("DeepSeek-V4")
    assert "Tasks: text-generation · Tags: moe" in message("Qwen/Qwen4")
    assert "Version: 0.7.0rc1 · Pre-release: yes · Yanked: yes · Files: 2" in message(
        "vllm 0.7.0rc1 released"
    )
    image = message("vllm/vllm-openai:v0.7.0")
    assert "Tag: v0.7.0 · Digest: sha256:" in image and "Platforms: linux/amd64" in image
    assert (
        "Severity: CRITICAL · CVSS: CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
        " · Package: vllm (PyPI) · Aliases: CVE-2026-0001"
    ) in message("GHSA-xxxx-yyyy")
    assert "Version: 2.0.0 · Stable: yes · SHA-256: " in message("translate")
    assert "Feed: Qwen blog" in message("Qwen4 is out")
    for text in texts:  # why it was sent, and the link
        assert text.splitlines()[2].startswith("Matched: ") and "everything" in text
        assert text.splitlines()[-1].startswith("http")


def test_a_bundle_for_a_chinese_channel_says_its_headlines_and_matched_in_chinese():
    """A group's message renders in the channel's locale too (headline, "Matched" label)."""
    items = tuple(
        context(
            event_type="model_added",
            source_key="huggingface:deepseek-ai:models",
            resource_id=f"deepseek-ai/DeepSeek-V{i}",
            title=f"DeepSeek-V{i}",
            url=f"https://huggingface.co/deepseek-ai/DeepSeek-V{i}",
        )
        for i in range(3)
    )
    bundle = replace(items[0], bundle="group", items=items)
    text = render(bundle, 500, Settings("zh"))
    assert ZH.headlines["model_added"] in text
    assert ZH.labels["matched"] in text
    assert "Matched" not in text
    assert all(item.url in text for item in items)


def test_every_fixed_word_of_a_group_a_digest_and_a_fold_is_chinese_in_a_chinese_channel():
    """Headings, counts, "… and N more", the mixed-type lines and the subject: no English fixed
    word in a zh channel (the upstream's titles and the rules' names are not translated)."""
    import re

    def item(i: int, event_type: str, source: str) -> MessageContext:
        return context(
            event_type=event_type,
            source_key=f"{source}:org:models",
            resource_id=f"org/m{i}",
            title=f"m{i}",
            url=f"https://x.example/{i}",
            rules=("r",),
            reasons=(),
        )

    same = tuple(item(i, "model_added", "huggingface") for i in range(12))
    mixed = tuple(
        item(i, "model_added" if i % 2 else "release_published", "huggingface" if i % 3 else "pypi")
        for i in range(12)
    )
    english = re.compile(r"alerts?|Digest|more|and|at once|Matched", re.IGNORECASE)
    for kind, items in [("group", same), ("group", mixed), ("digest", mixed), ("fold", mixed)]:
        bundle = replace(items[0], bundle=kind, items=items)
        for text in (render(bundle, None, Settings("zh")), render(bundle, 200, Settings("zh"))):
            for line in text.splitlines():
                fixed = re.sub(r"https://\S+|\bm\d+\b|huggingface|pypi|org|\br\b", "", line)
                assert not english.search(fixed), (kind, line)
        assert not english.search(bundle.subject("zh").replace("huggingface", "")), kind
        cut = render(bundle, 200, Settings("zh"))
        assert "另有" in cut  # "… and N more", in Chinese


def test_the_titles_feishu_and_dingtalk_show_follow_the_channels_locale():
    """A post's title (Feishu) and a markdown message's title (DingTalk, the notification
    line) are built from fixed words: in a Chinese channel, Chinese ones."""
    from mrt_engine.notify import kinds
    from mrt_engine.notify.base import ChannelContext, Outgoing
    from mrt_engine.secrets import SecretResolver

    env = {
        "FEISHU_WEBHOOK_URL": "https://open.feishu.cn/open-apis/bot/v2/hook/abcdefgh1234",
        "DINGTALK_WEBHOOK_URL": "https://oapi.dingtalk.com/robot/send?access_token=abcdefgh1234",
    }
    titles = {}
    for name in ("feishu", "dingtalk"):
        kind = kinds()[name]
        channel = kind.build(kind.settings(locale="zh"), ChannelContext(SecretResolver(env), 5.0))
        try:
            body = channel.payload(Outgoing(1, 1, context()))
        finally:
            channel.close()
        if name == "feishu":
            titles[name] = body["content"]["post"]["zh_cn"]["title"]
        else:
            titles[name] = body["markdown"]["title"]
    for title in titles.values():
        assert ZH.headlines["pr_merged"] in title, titles


def test_markdown_keeps_an_underscore_inside_a_word_and_escapes_every_other_markup():
    """CommonMark §6.2: an underscore between two alphanumerics can neither open nor close
    emphasis, so a model name keeps it; every other markup character is made inert."""
    from mrt_engine.notify.markup import escape_markdown

    assert escape_markdown("deepseek_v3_base Qwen2_5 模型_名") == "deepseek_v3_base Qwen2_5 模型_名"
    assert escape_markdown("_it_ a__b_ x_ _y a*b*c ~s~ `c` [l](u)") == (
        "＿it＿ a＿＿b＿ x＿ ＿y a＊b＊c ～s～ ｀c｀ ［l］(u)"
    )
    assert escape_markdown("# h\n> q\n- l") == "＃ h\n＞ q\n－ l"
