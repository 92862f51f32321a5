"""HuggingFace Hub: the models of an organisation, via ``GET /api/models``.

``/api/models?author=ORG&sort=lastModified&direction=-1&limit=N&expand=sha&expand=...`` lists
the models newest-changed first; further pages come from the ``Link: rel="next"`` cursor URL.
``sha`` is the model repo's head commit, so ``model_updated`` fires once per commit. A mirror is
used by setting ``api_base`` (default ``$HF_ENDPOINT``, else https://huggingface.co).
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlencode

from pydantic import Field

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.http import PollSession
from mrt_engine.quarantine import Quarantine, keyed_by
from mrt_engine.secrets import Secret, shorten
from mrt_engine.sources.base import BuildContext, Source, SourceKind, SourceState, expect
from mrt_engine.sources.model_list import Listing, ModelInfo, ModelListSource, time_revision
from mrt_engine.sources.validators import ApiBase, OrgName
from mrt_engine.timeutil import parse_upstream

DEFAULT_API = "https://huggingface.co"
EXPAND = (
    "sha",
    "lastModified",
    "createdAt",
    "pipeline_tag",
    "library_name",
    "tags",
    "gated",
    "private",
    "downloads",
    "likes",
)

# What trace shows of a model beyond its columns (id, tags as labels): the revision and times that
# decided its events. Not the download and like counters, which change without an event.
RAW = ("sha", "lastModified", "createdAt", "pipeline_tag", "library_name", "gated", "private")


class HuggingFaceSettings(StrictModel):
    """``sources.huggingface``."""

    orgs: list[OrgName]
    token_env: str | None = None
    api_base: ApiBase | None = None  # default: $HF_ENDPOINT, else https://huggingface.co
    poll_interval_seconds: Duration | None = Field(None, ge=1)
    page_size: int = Field(100, ge=1, le=1000)
    max_pages: int = Field(50, ge=1, le=1000)
    sweep_interval_seconds: Duration = Field(3600.0, ge=1)


class HuggingFaceModels(ModelListSource):
    platform = "huggingface"

    def __init__(
        self,
        org: str,
        settings: HuggingFaceSettings,
        api_base: str,
        token: Secret | None,
        interval: float,
    ) -> None:
        super().__init__(
            f"huggingface:{org}:models", api_base, interval, org, settings.sweep_interval_seconds
        )
        self.settings = settings
        self.token = token

    @functools.cached_property  # the same for every poll
    def list_url(self) -> str:
        query = [
            ("author", self.org),
            ("sort", "lastModified"),
            ("direction", "-1"),
            ("limit", str(self.settings.page_size)),
            *[("expand", name) for name in EXPAND],
        ]
        return f"{self.api_base}/api/models?{urlencode(query)}"

    def list_models(self, http: PollSession, state: SourceState, *, conditional: bool) -> Listing:
        url = self.list_url
        validators = state.validators if conditional and state.validated_url == url else None
        first = http.get(url, headers=self.headers(url), validators=validators)
        if first.not_modified:
            return Listing(None)
        quarantine = Quarantine()
        models = self._page(first.json(), quarantine)
        pages, next_url = 1, first.next_url()
        while next_url and pages < self.settings.max_pages:
            page = http.get(next_url, headers=self.headers(next_url))
            models.extend(self._page(page.json(), quarantine))
            pages += 1
            next_url = page.next_url()
        return Listing(
            models,
            first.validators,
            url,
            complete=next_url is None,
            quarantined=quarantine.items,
        )

    def _page(self, data: Any, quarantine: Quarantine) -> list[ModelInfo]:
        if isinstance(data, dict) and "error" in data:
            expect(False, f"HuggingFace answered an error: {shorten(data['error'], 160)}")
        expect(isinstance(data, list), f"expected a JSON list of models, got {type(data).__name__}")
        return quarantine.each(data, self._model, key=keyed_by("id", "modelId"), what="model")

    def _model(self, item: Any) -> ModelInfo:
        expect(isinstance(item, dict), "expected each model to be an object")
        model_id = item.get("id") or item.get("modelId")
        expect(
            isinstance(model_id, str) and "/" in model_id,
            "model object without an 'org/name' id",
        )
        sha = item.get("sha")
        modified = parse_upstream(item.get("lastModified"))
        expect(
            isinstance(sha, str) or modified is not None,
            f"model {model_id} has neither sha nor lastModified",
        )
        tags = [t for t in item.get("tags") or [] if isinstance(t, str)]
        facts = [
            item.get("pipeline_tag"),
            item.get("library_name"),
            "gated" if item.get("gated") else None,
            "private" if item.get("private") else None,
        ]
        return ModelInfo(
            id=model_id,
            revision=sha if isinstance(sha, str) else time_revision(modified),
            url=self.web_url(model_id),
            last_modified=modified,
            created_at=parse_upstream(item.get("createdAt")),
            summary=" · ".join(str(f) for f in facts if f),
            labels=tuple(tags),
            raw={k: item.get(k) for k in RAW if k in item},
        )


def build(settings: HuggingFaceSettings, ctx: BuildContext) -> list[Source]:
    token = ctx.secrets.get(
        settings.token_env,
        where="sources.huggingface.token_env",
        what="HuggingFace token; public models need none",
        required=False,
    )
    api_base = settings.api_base or ctx.environ.get("HF_ENDPOINT") or DEFAULT_API
    interval = settings.poll_interval_seconds or ctx.default_interval
    return [
        HuggingFaceModels(org, settings, api_base.rstrip("/"), token, interval)
        for org in settings.orgs
    ]


KIND = SourceKind(
    name="huggingface",
    settings=HuggingFaceSettings,
    build=build,
    host_defaults=HostPolicy(max_concurrency=2, min_interval_seconds=0.5, timeout_seconds=30),
)
