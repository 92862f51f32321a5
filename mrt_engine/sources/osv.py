"""Security advisories from OSV for the packages we serve with (vllm, transformers, torch, ...).

``POST {api_base}/v1/query`` with ``{"package": {"name", "ecosystem"}}`` lists every known
vulnerability of the package (paged by ``next_page_token``). Each advisory is announced once
(``advisory_published``, event_id = its id) with its severity (the database's rating, else the
CVSS vector) in the title and labels. A built-in rule gives advisories a high priority (see
:func:`default_rules`); a user rule of the same name replaces it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.http import PollSession
from mrt_engine.quarantine import Quarantine
from mrt_engine.rules.model import RuleConfig
from mrt_engine.sources.base import BuildContext, Source, SourceKind, SourceState, expect
from mrt_engine.sources.item_set import Item, ItemSet, ItemSetSource
from mrt_engine.sources.validators import ApiBase
from mrt_engine.text import body_text, clean_line, line_excerpt
from mrt_engine.timeutil import parse_upstream

DEFAULT_API = "https://api.osv.dev"
MAX_PAGES = 20
ECOSYSTEMS = ("PyPI", "npm", "Go", "crates.io", "Maven", "NuGet", "RubyGems", "Packagist", "Hex")


class OsvPackage(StrictModel):
    name: str
    ecosystem: str = "PyPI"

    @field_validator("ecosystem")
    @classmethod
    def _ecosystem(cls, value: str) -> str:
        if value not in ECOSYSTEMS:
            raise ValueError(f"expected one of {', '.join(ECOSYSTEMS)}, got {value!r}")
        return value


class OsvSettings(StrictModel):
    """``sources.osv``: packages as ``"vllm"`` (PyPI) or ``{name, ecosystem}``."""

    packages: list[str | OsvPackage]
    api_base: ApiBase | None = None
    poll_interval_seconds: Duration | None = Field(None, ge=1)

    def package_list(self) -> list[OsvPackage]:
        return [p if isinstance(p, OsvPackage) else OsvPackage(name=p) for p in self.packages]


def severity_of(vuln: dict[str, Any]) -> str:
    """``CRITICAL``/``HIGH``/``MODERATE``/``LOW`` where the database rates it, else the CVSS
    vector, else ``unrated``."""
    rated = (vuln.get("database_specific") or {}).get("severity")
    if isinstance(rated, str) and rated:
        return clean_line(rated).upper()
    return _cvss_vector(vuln) or "unrated"


def _cvss_vector(vuln: dict[str, Any]) -> str | None:
    """The first CVSS vector of ``severity`` (``CVSS:3.1/AV:N/...``), if any."""
    for entry in vuln.get("severity") or []:
        if isinstance(entry, dict) and isinstance(entry.get("score"), str):
            return clean_line(entry["score"])
    return None


class OsvAdvisories(ItemSetSource):
    platform = "osv"
    resource_type = "package"

    def __init__(self, package: OsvPackage, api_base: str, interval: float) -> None:
        super().__init__(
            f"osv:{package.ecosystem}:{package.name}", api_base, interval, package.name
        )
        self.package = package

    def fetch(self, http: PollSession, state: SourceState, *, conditional: bool) -> ItemSet:
        url = f"{self.api_base}/v1/query"
        query: dict[str, Any] = {
            "package": {"name": self.package.name, "ecosystem": self.package.ecosystem}
        }
        items: list[Item] = []
        quarantine = Quarantine()
        for _ in range(MAX_PAGES):
            data = http.request("POST", url, json_body=query).json()
            expect(isinstance(data, dict), f"expected a JSON object, got {type(data).__name__}")
            vulns = data.get("vulns", [])
            expect(isinstance(vulns, list), "'vulns' is not a list")
            items.extend(quarantine.each(vulns, self._item, what="vulnerability"))
            token = data.get("next_page_token")
            if not token:
                break
            query = {**query, "page_token": token}
        return ItemSet(items, quarantined=quarantine.items)

    def _item(self, vuln: Any) -> Item:
        expect(isinstance(vuln, dict), "expected each vulnerability to be an object")
        vuln_id = vuln.get("id")
        expect(isinstance(vuln_id, str) and vuln_id != "", "vulnerability without an 'id'")
        severity = severity_of(vuln)
        cvss = _cvss_vector(vuln)
        aliases = [a for a in vuln.get("aliases") or [] if isinstance(a, str)]
        details = body_text(vuln.get("details") or "")
        summary = clean_line(vuln.get("summary") or "") or line_excerpt(details, 120)
        return Item(
            key=vuln_id,
            event_id=vuln_id,
            event_type="advisory_published",
            title=f"[{severity}] {vuln_id} in {self.package.name}: {summary}"[:300],
            url=f"https://osv.dev/vulnerability/{vuln_id}",
            occurred_at=parse_upstream(vuln.get("published") or vuln.get("modified")),
            summary=line_excerpt(details or summary, 280),
            body=details,
            labels=(f"severity:{severity}", *aliases[:10]),
            raw={
                "id": vuln_id,
                "aliases": aliases,
                "severity": severity,
                # The CVSS vector too when the database's rating is the severity (messages show both).
                "cvss": cvss if cvss != severity else None,
                "modified": vuln.get("modified"),
            },
        )


def default_rules() -> list[RuleConfig]:
    """Advisories matter: notify every channel at a high priority unless a user rule says otherwise."""
    return [
        RuleConfig(
            name="security-advisories",
            description="OSV advisories for watched packages (built in; redefine to change)",
            event_type=["advisory_published"],
            priority=900,
        )
    ]


def build(settings: OsvSettings, ctx: BuildContext) -> list[Source]:
    api_base = (settings.api_base or DEFAULT_API).rstrip("/")
    interval = settings.poll_interval_seconds or ctx.default_interval
    return [OsvAdvisories(p, api_base, interval) for p in settings.package_list()]


KIND = SourceKind(
    name="osv",
    settings=OsvSettings,
    build=build,
    host_defaults=HostPolicy(max_concurrency=4, min_interval_seconds=0.0, timeout_seconds=30),
)
