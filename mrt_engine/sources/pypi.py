"""PyPI: new versions of packages (vllm, sglang, transformers, ...), via the JSON API.

``GET {api_base}/pypi/NAME/json`` lists every release with its files; a version is announced
once (``version_released``, event_id = the version), flagged when it is a pre-release (PEP 440)
or yanked. Conditional requests (ETag) make an unchanged package cost a ``304``.
"""

from __future__ import annotations

import re
from typing import Any

from packaging.version import InvalidVersion, Version
from pydantic import Field, field_validator

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.http import PollSession
from mrt_engine.quarantine import Quarantine
from mrt_engine.sources.base import BuildContext, Source, SourceKind, SourceState, expect
from mrt_engine.sources.item_set import Item, ItemSet, ItemSetSource
from mrt_engine.sources.validators import ApiBase
from mrt_engine.text import clean_line
from mrt_engine.timeutil import parse_upstream
from mrt_engine.wording import plural

DEFAULT_API = "https://pypi.org"
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


class PyPISettings(StrictModel):
    """``sources.pypi``."""

    packages: list[str]
    api_base: ApiBase | None = None
    poll_interval_seconds: Duration | None = Field(None, ge=1)

    @field_validator("packages")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"expected a PyPI project name like 'vllm', got {name!r}")
        return value


def _sort_key(item: tuple[str, Any]) -> tuple[int, Any]:
    try:
        return (1, Version(item[0]))
    except InvalidVersion:
        return (0, item[0])


class PyPIPackage(ItemSetSource):
    platform = "pypi"
    resource_type = "package"

    def __init__(self, name: str, api_base: str, interval: float) -> None:
        super().__init__(f"pypi:{name}", api_base, interval, name)
        self.name = name

    def fetch(self, http: PollSession, state: SourceState, *, conditional: bool) -> ItemSet:
        url = f"{self.api_base}/pypi/{self.name}/json"
        validators = state.validators if conditional and state.validated_url == url else None
        answer = http.get(url, headers={"Accept": "application/json"}, validators=validators)
        if answer.not_modified:
            return ItemSet(None)
        data = answer.json()
        expect(isinstance(data, dict), f"expected a JSON object, got {type(data).__name__}")
        releases = data.get("releases")
        expect(isinstance(releases, dict), "answer without a 'releases' object")
        quarantine = Quarantine()
        found = quarantine.each(
            sorted(releases.items(), key=_sort_key, reverse=True),
            self._release,
            key=lambda release: release[0],
            what="release",
        )
        items = [item for item in found if item is not None]
        return ItemSet(items, answer.validators, url, quarantine.items)

    def _release(self, release: tuple[str, Any]) -> Item | None:
        version, files = release
        expect(isinstance(files, list), f"release {version!r} without a list of files")
        if not files:
            return None  # a version registered without files is not installable yet
        return self._item(str(version), files)

    def _item(self, version: str, files: list[Any]) -> Item:
        uploads = [
            parse_upstream(f.get("upload_time_iso_8601") or f.get("upload_time"))
            for f in files
            if isinstance(f, dict)
        ]
        uploaded = min((u for u in uploads if u is not None), default=None)
        yanked = all(isinstance(f, dict) and f.get("yanked") for f in files)
        try:
            prerelease = Version(version).is_prerelease
        except InvalidVersion:
            prerelease = False
        labels = tuple(flag for flag, on in (("prerelease", prerelease), ("yanked", yanked)) if on)
        kinds = sorted({str(f.get("packagetype")) for f in files if isinstance(f, dict)})
        title = f"{self.name} {version} released on PyPI"
        if prerelease:
            title += " (pre-release)"
        return Item(
            key=version,
            event_id=version,
            event_type="version_released",
            title=title,
            url=f"{_web(self.api_base)}/project/{self.name}/{version}/",
            occurred_at=uploaded,
            summary=clean_line(f"{plural(len(files), 'file')}: {', '.join(kinds)}"),
            labels=labels,
            raw={
                "version": version,
                "files": len(files),
                "prerelease": prerelease,
                "yanked": yanked,
            },
        )


def _web(api_base: str) -> str:
    return DEFAULT_API if api_base.rstrip("/") == DEFAULT_API else api_base.rstrip("/")


def build(settings: PyPISettings, ctx: BuildContext) -> list[Source]:
    api_base = (settings.api_base or DEFAULT_API).rstrip("/")
    interval = settings.poll_interval_seconds or ctx.default_interval
    return [PyPIPackage(name, api_base, interval) for name in settings.packages]


KIND = SourceKind(
    name="pypi",
    settings=PyPISettings,
    build=build,
    host_defaults=HostPolicy(max_concurrency=4, min_interval_seconds=0.2, timeout_seconds=20),
)
