"""Docker Hub: tags pushed to container images (vllm/vllm-openai, lmsysorg/sglang, ...).

``GET {api_base}/v2/repositories/NS/REPO/tags?ordering=last_updated&page_size=N`` lists tags
newest first, each with its digest; further pages come from the body's ``next`` URL. A tag is
announced with its digest (event_id ``TAG@DIGEST``), so a tag pushed again with new content
(``latest``, ``nightly``) is news again, and an unchanged one never is.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.http import PollSession
from mrt_engine.quarantine import Quarantine
from mrt_engine.sources.base import BuildContext, Source, SourceKind, SourceState, expect
from mrt_engine.sources.item_set import Item, ItemSet, ItemSetSource
from mrt_engine.sources.validators import ApiBase
from mrt_engine.timeutil import parse_upstream

DEFAULT_API = "https://hub.docker.com"
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*/[a-z0-9]+(?:[._-][a-z0-9]+)*$")


class DockerSettings(StrictModel):
    """``sources.docker``."""

    images: list[str]
    api_base: ApiBase | None = None
    poll_interval_seconds: Duration | None = Field(None, ge=1)
    page_size: int = Field(50, ge=1, le=100)
    max_pages: int = Field(2, ge=1, le=50)

    @field_validator("images")
    @classmethod
    def _images(cls, value: list[str]) -> list[str]:
        for image in value:
            if not _IMAGE.match(image):
                raise ValueError(f'expected "namespace/repository", got {image!r}')
        return value


class DockerImage(ItemSetSource):
    platform = "docker"
    resource_type = "image"

    def __init__(
        self, image: str, settings: DockerSettings, api_base: str, interval: float
    ) -> None:
        super().__init__(f"docker:{image}", api_base, interval, image)
        self.image = image
        self.settings = settings

    def fetch(self, http: PollSession, state: SourceState, *, conditional: bool) -> ItemSet:
        url = (
            f"{self.api_base}/v2/repositories/{self.image}/tags"
            f"?ordering=last_updated&page_size={self.settings.page_size}"
        )
        validators = state.validators if conditional and state.validated_url == url else None
        first = http.get(url, headers={"Accept": "application/json"}, validators=validators)
        if first.not_modified:
            return ItemSet(None)
        quarantine = Quarantine()
        items, next_url = self._page(first.json(), quarantine)
        pages = 1
        while next_url and pages < self.settings.max_pages:
            page_items, next_url = self._page(http.get(next_url).json(), quarantine)
            items.extend(page_items)
            pages += 1
        return ItemSet(items, first.validators, url, quarantine.items)

    def _page(self, data: Any, quarantine: Quarantine) -> tuple[list[Item], str | None]:
        expect(isinstance(data, dict), f"expected a JSON object, got {type(data).__name__}")
        results = data.get("results")
        expect(isinstance(results, list), "answer without a 'results' list")
        next_url = data.get("next")
        expect(next_url is None or isinstance(next_url, str), "'next' is not a URL")
        return quarantine.each(results, self._item, what="tag"), next_url

    def _item(self, tag: Any) -> Item:
        expect(isinstance(tag, dict), "expected each tag to be an object")
        name = tag.get("name")
        expect(isinstance(name, str) and name != "", "tag without a name")
        digest = tag.get("digest")
        images = [i for i in tag.get("images") or [] if isinstance(i, dict)]
        if not isinstance(digest, str):  # older answers: one digest per platform image
            digests = sorted(str(i.get("digest")) for i in images if i.get("digest"))
            digest = ",".join(digests)
        expect(bool(digest), f"tag {name!r} without a digest")
        platforms = sorted(
            {f"{i.get('os')}/{i.get('architecture')}" for i in images if i.get("architecture")}
        )
        size = tag.get("full_size")
        summary = f"digest {digest[:19]}"
        if platforms:
            summary += f" · {', '.join(platforms)}"
        if isinstance(size, int):
            summary += f" · {size / 1e9:.1f} GB"
        pushed = parse_upstream(tag.get("tag_last_pushed") or tag.get("last_updated"))
        return Item(
            key=name,
            event_id=f"{name}@{digest}",
            event_type="image_tag_pushed",
            title=f"{self.image}:{name} pushed to Docker Hub",
            url=f"{_web(self.api_base)}/r/{self.image}/tags?name={name}",
            occurred_at=pushed,
            summary=summary,
            labels=tuple(platforms),
            raw={"tag": name, "digest": digest, "last_updated": tag.get("last_updated")},
        )


def _web(api_base: str) -> str:
    return api_base.rstrip("/")


def build(settings: DockerSettings, ctx: BuildContext) -> list[Source]:
    api_base = (settings.api_base or DEFAULT_API).rstrip("/")
    interval = settings.poll_interval_seconds or ctx.default_interval
    return [DockerImage(image, settings, api_base, interval) for image in settings.images]


KIND = SourceKind(
    name="docker",
    settings=DockerSettings,
    build=build,
    # Docker Hub limits anonymous API use: few requests, spaced out.
    host_defaults=HostPolicy(max_concurrency=2, min_interval_seconds=1.0, timeout_seconds=20),
)
