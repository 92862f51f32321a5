"""The fixed words of a message in each locale (``notify.<channel>.locale``): headlines, the
names of the key fields, yes/no. Event text is never translated: it is the upstream's."""

from __future__ import annotations

from dataclasses import dataclass

LOCALES = ("en", "zh")


@dataclass(frozen=True)
class Words:
    """One locale's words; a key without a word falls back to English, then to itself."""

    headlines: dict[str, str]
    labels: dict[str, str]  # the key fields' names (and the fixed words of the templates)
    yes: str
    no: str
    operator: str  # "matched" of an alert an operator sent by hand
    separator: str  # between reasons of several rules
    # A later event of an incident (mrt_engine/notify/incident_line.py): "new_source" when it
    # brought a source, "same_source" when not; "minutes", "hours", "days", "now": how long ago.
    incident: dict[str, str]
    # A bundle's fixed words (delivery/bundles.py: groups, digests, folds), str.format patterns:
    # ``{n}`` a count, ``{count}`` the alerts' count in words, ``{by}`` the counts per source.
    bundle: dict[str, str]


EN = Words(
    headlines={
        "issue_opened": "New issue",
        "issue_closed": "Issue closed",
        "pr_opened": "New PR",
        "pr_merged": "PR merged",
        "pr_closed": "PR closed",
        "release_published": "Release published",
        "tag_created": "New tag",
        "model_added": "New model",
        "model_updated": "Model updated",
        "model_removed": "Model removed",
        "version_released": "New version",
        "image_tag_pushed": "Image pushed",
        "advisory_published": "Security advisory",
        "service_version_published": "Service version published",
        "service_version_stable": "Service version stable",
        "service_checksum_changed": "CHECKSUM CHANGED",
        "feed_entry": "New entry",
        "doctor_test": "Test message",  # mrt-engine doctor --send-test
        "source_unhealthy": "Source unhealthy",
        "source_recovered": "Source recovered",
        "source_stale": "Source stale",
        "source_fresh": "Source fresh again",
    },
    labels={
        "matched": "Matched",
        "author": "Author",
        "labels": "Labels",
        "merged": "Merged",
        "draft": "Draft",
        "reason": "Reason",
        "tag": "Tag",
        "prerelease": "Pre-release",
        "commit": "Commit",
        "pipeline_tag": "Pipeline",
        "library_name": "Library",
        "gated": "Gated",
        "private": "Private",
        "tasks": "Tasks",
        "tags": "Tags",
        "version": "Version",
        "yanked": "Yanked",
        "files": "Files",
        "digest": "Digest",
        "platforms": "Platforms",
        "severity": "Severity",
        "cvss": "CVSS",
        "package": "Package",
        "aliases": "Aliases",
        "stable": "Stable",
        "sha256": "SHA-256",
        "models": "Models",
        "feed": "Feed",
        "open": "Open",  # a link button (Slack)
    },
    yes="yes",
    no="no",
    operator="sent by an operator",
    separator="; ",
    incident={
        "new_source": "{nth} source for {name}: first seen on {first} {ago}",
        "same_source": "{nth} alert for {name} ({sources} sources): first seen on {first} {ago}",
        "minutes": "{n} min ago",
        "hours": "{n} h ago",
        "days": "{n} d ago",
        "now": "just now",
    },
    bundle={
        "alert_one": "{n} alert",
        "alert_many": "{n} alerts",
        "alerts": "alerts",  # the headline of a group of several event types
        "digest": "Digest · {count} ({by})",
        "fold": "{count} at once ({by})",
        "more": "… and {n} more",
        "summary": "Summary",
        "colon": ": ",
        "list": ", ",
    },
)

ZH = Words(
    headlines={
        "issue_opened": "新 Issue",
        "issue_closed": "Issue 已关闭",
        "pr_opened": "新 PR",
        "pr_merged": "PR 已合并",
        "pr_closed": "PR 已关闭（未合并）",
        "release_published": "新 Release 发布",
        "tag_created": "新 Tag",
        "model_added": "新模型上线",
        "model_updated": "模型更新",
        "model_removed": "模型下架",
        "version_released": "新版本",
        "image_tag_pushed": "镜像已推送",
        "advisory_published": "安全公告",
        "service_version_published": "服务新版本发布",
        "service_version_stable": "服务版本转为稳定版",
        "service_checksum_changed": "校验和变更告警",
        "feed_entry": "新文章",
        "doctor_test": "测试消息",
        "source_unhealthy": "数据源异常",
        "source_recovered": "数据源已恢复",
        "source_stale": "数据源长时间未更新",
        "source_fresh": "数据源已恢复更新",
    },
    labels={
        "matched": "命中规则",
        "author": "作者",
        "labels": "标签",
        "merged": "已合并",
        "draft": "草稿",
        "reason": "关闭原因",
        "tag": "Tag",
        "prerelease": "预发布",
        "commit": "提交",
        "pipeline_tag": "任务类型",
        "library_name": "框架",
        "gated": "需申请访问",
        "private": "私有",
        "tasks": "任务",
        "tags": "标签",
        "version": "版本",
        "yanked": "已撤回",
        "files": "文件数",
        "digest": "镜像摘要",
        "platforms": "平台",
        "severity": "严重程度",
        "cvss": "CVSS",
        "package": "受影响的包",
        "aliases": "别名",
        "stable": "稳定版",
        "sha256": "SHA-256",
        "models": "模型",
        "feed": "订阅源",
        "open": "打开",
    },
    yes="是",
    no="否",
    operator="由操作员手动发送",
    separator="；",
    incident={
        "new_source": "{name} 的第 {n} 个来源：{ago}首次出现在 {first}",
        "same_source": "{name} 的第 {n} 条告警（共 {sources} 个来源）：{ago}首次出现在 {first}",
        "minutes": "{n} 分钟前",
        "hours": "{n} 小时前",
        "days": "{n} 天前",
        "now": "刚刚",
    },
    bundle={
        "alert_one": "{n} 条告警",
        "alert_many": "{n} 条告警",
        "alerts": "多类告警",
        "digest": "定时摘要 · {count}（{by}）",
        "fold": "同时到达 {count}（{by}）",
        "more": "……另有 {n} 条",
        "summary": "摘要",
        "colon": "：",
        "list": "、",
    },
)

_BY_NAME = {"en": EN, "zh": ZH}


def words(locale: str) -> Words:
    """The words of ``locale`` (English for an unknown one: config validation names the two)."""
    return _BY_NAME.get(locale, EN)


def headline(event_type: str, locale: str = "en") -> str:
    """``New PR`` / ``新 PR``; an event type without a headline reads as its words."""
    return (
        words(locale).headlines.get(event_type)
        or EN.headlines.get(event_type)
        or event_type.replace("_", " ")
    )


def label(key: str, locale: str = "en") -> str:
    """The name of a key field (``pipeline_tag`` -> ``Pipeline`` / ``任务类型``)."""
    return words(locale).labels.get(key) or EN.labels.get(key) or key.replace("_", " ")


def bundle_word(key: str, locale: str = "en", **values: object) -> str:
    """A bundle's fixed words in ``locale`` (English for a key it lacks), filled with
    ``values``: ``bundle_word("more", "zh", n=3)`` -> ``……另有 3 条``."""
    pattern = words(locale).bundle.get(key) or EN.bundle[key]
    return pattern.format(**values)
