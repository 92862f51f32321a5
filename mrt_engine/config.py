"""Load a JSON or TOML config (the v0 schema keeps working), validate it, report errors by key path.

Sections owned by a source or a channel are declared in that source's or channel's module (its
``Settings`` model); this module composes them, so adding a platform never edits this file.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

DEFAULT_DB = "./mrt_state.sqlite3"
MAX_INTERVAL_SECONDS = 30 * 86400
MAX_WAIT_SECONDS = 600
MAX_RETENTION_DAYS = 36500


class ConfigError(Exception):
    """An unusable config. ``problems`` are lines of the form ``key.path: what is wrong``."""

    def __init__(self, problems: list[str], path: Path | None = None) -> None:
        self.problems = problems
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(problems))

    def report(self) -> str:
        """A message for a terminal: one problem per line."""
        head = f"invalid config {self.path}" if self.path else "invalid config"
        return head + ":\n" + "\n".join(f"  {p}" for p in self.problems)


def _at_most(limit: float, words: str) -> AfterValidator:
    def check(value: float) -> float:
        if not math.isfinite(value):  # StrictModel refuses these first; this type holds alone
            raise ValueError(f"must be a finite number, got {value}")
        if value > limit:
            raise ValueError(f"must be <= {limit:.0f} ({words}), got {value:g}")
        return value

    return AfterValidator(check)


# Every duration of the config is one of these types: a finite number of seconds with an upper
# bound, so no value can overflow a timedelta, a sleep or the scheduler (1e308, inf and nan
# used to pass the check and crash ``run``). Lower bounds stay at the field. (No Field() inside
# the Annotated: pydantic 2.0, our lower bound, refuses a second Field() on the same field.)
Duration = Annotated[float, _at_most(MAX_INTERVAL_SECONDS, "30 days")]
"""An interval, a backoff or a lease: at most 30 days."""
Wait = Annotated[float, _at_most(MAX_WAIT_SECONDS, "10 minutes")]
"""A wait inside one poll or one request (a timeout, a retry pause, host spacing)."""
Days = Annotated[float, _at_most(MAX_RETENTION_DAYS, "100 years: keep it that long")]
"""How long the store keeps something, in days."""


MAX_STALE_INTERVALS = 1000.0
StaleMultiplier = Annotated[float, Field(ge=0, le=MAX_STALE_INTERVALS)]
"""How many of its intervals a source may go without a successful poll (0: forever)."""


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StateConfig(StrictModel):
    """Where the store is: ``sqlite_path`` (the embedded default), or ``url`` —
    ``sqlite:///path`` or ``postgresql://user@host/db`` — with the password in the environment
    variable ``password_env`` names (never in the URL)."""

    sqlite_path: str = DEFAULT_DB
    url: str | None = None
    password_env: str | None = None

    @field_validator("url")
    @classmethod
    def _usable_url(cls, value: str | None) -> str | None:
        if value is not None:
            from mrt_engine.store.location import StoreUrlError, parse_location

            try:
                parse_location(value)
            except StoreUrlError as exc:
                raise ValueError(str(exc)) from None
        return value


class DeliveryConfig(StrictModel):
    """Outbox delivery (R1/R2)."""

    workers: int = Field(2, ge=1, le=64)
    max_attempts: int = Field(10, ge=1, le=1000)
    backoff_initial_seconds: Duration = Field(5.0, gt=0)
    backoff_max_seconds: Duration = Field(3600.0, gt=0)
    request_timeout_seconds: Wait = Field(10.0, gt=0)
    lease_seconds: Duration = Field(120.0, ge=5)
    jitter: float = Field(0.2, ge=0, le=0.9)
    # Grouping (issue 11), for every channel that does not set its own: hits of one group wait
    # this long and go out as one message; later hits of the group at most every interval.
    # Both 0: no grouping, every hit is its own message as soon as it is committed.
    group_wait_seconds: Duration = Field(30.0, ge=0)
    group_interval_seconds: Duration = Field(300.0, ge=0)


class HostPolicy(StrictModel):
    """Per-host HTTP limits; every source on the host shares them (S1/S2)."""

    max_concurrency: int | None = Field(None, ge=1, le=64)
    min_interval_seconds: Wait | None = Field(None, ge=0)
    timeout_seconds: Wait | None = Field(None, gt=0)


class HttpConfig(StrictModel):
    user_agent: str = "model-release-tracker/1.0 (+https://github.com/)"
    timeout_seconds: Wait = Field(20.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    retry_initial_seconds: Wait = Field(1.0, gt=0)
    retry_max_seconds: Wait = Field(30.0, gt=0)
    max_inline_wait_seconds: Wait = Field(10.0, ge=0)
    max_response_bytes: int = Field(20_000_000, ge=10_000)
    # The most one try of a request may take, connect and every read included (a timeout above
    # bounds one socket operation only; an upstream trickling a byte a second never trips it).
    request_deadline_seconds: Duration = Field(60.0, gt=0, le=3600)
    hosts: dict[str, HostPolicy] = Field(default_factory=dict)


class SchedulerConfig(StrictModel):
    poll_workers: int = Field(4, ge=1, le=64)
    jitter_seconds: Duration | None = Field(None, ge=0)
    max_backoff_seconds: Duration = Field(900.0, ge=1)
    shutdown_timeout_seconds: Wait = Field(5.0, ge=0.5, le=120)
    # The most one poll may spend on HTTP: every request, retry, backoff and rate-limit wait.
    poll_deadline_seconds: Duration = Field(300.0, gt=0, le=3600)
    # After this many failed polls in a row a source sends one "unhealthy" alert, and one
    # "recovered" alert when it works again (never one per failure).
    unhealthy_after_failures: int = Field(5, ge=1)
    # Polls that change nothing are not committed one by one: their times and figures are
    # written this often (at most a minute late, so views of the store stay that current).
    idle_flush_seconds: Duration = Field(60.0, gt=0, le=60)
    # Engines sharing a store (PostgreSQL): an engine renews its heartbeat and its sources'
    # leases every third of this; a dead engine's sources and claims are taken over after it.
    engine_lease_seconds: Duration = Field(30.0, ge=3, le=3600)
    # A source without a successful poll for this many of its intervals is stale: one alert,
    # and one more when it polls successfully again (0: never). Per source key, or fnmatch
    # pattern of keys ("pypi:*"), in stale_after_intervals_by_source (the first match wins).
    stale_after_intervals: float = Field(3.0, ge=0, le=MAX_STALE_INTERVALS)
    # ...and never sooner than this (a source polled every few seconds is not stale for a slow
    # poll or a busy minute); also what a source gets after the engine starts to succeed.
    stale_after_min_seconds: Duration = Field(60.0, ge=0)
    stale_after_intervals_by_source: dict[str, StaleMultiplier] = Field(default_factory=dict)


class RetentionConfig(StrictModel):
    """What the store forgets, and when (see :mod:`mrt_engine.store.retention`). Fingerprints,
    rule hits, alerts and deliveries are kept forever; these only troubleshoot."""

    enabled: bool = (
        True  # the engine prunes every interval_seconds (the CLI's `store prune` any time)
    )
    poll_metrics_days: Days = Field(30.0, ge=1)
    unmatched_raw_days: Days = Field(30.0, ge=1)  # raw JSON of events no rule matched
    sent_attempts_days: Days = Field(90.0, ge=1)  # attempts of deliveries sent that long ago
    ai_cache_days: Days = Field(30.0, ge=1)  # the optional AI's answers not used that long
    interval_seconds: Duration = Field(86400.0, ge=1)
    # Rows per write transaction, at most (batches start at 100 rows and grow while they hold
    # the store under 12 ms; one over 25 ms halves the next).
    batch_rows: int = Field(2000, ge=1, le=100_000)
    # Between two batches: the writer is free for polls and deliveries to commit.
    pause_seconds: Wait = Field(0.05, ge=0)


class IncidentsConfig(StrictModel):
    """How alerts of one model family are linked into an incident (mrt_engine/incidents.py)."""

    # An incident takes the family's alerted events until this long after its first one.
    window_days: Days = Field(14.0, gt=0)
    # AI3: an alert this alike (0 to 1, lexical; 0: off) to an earlier one of its incident within
    # the delivery's group time goes out in one message with it (mrt_engine/incident_clusters.py).
    cluster_similarity: float = Field(0.5, ge=0, le=1)
    # The same with the endpoint's embeddings (``ai.embedding_model``): their cosine, on its own
    # scale (a model puts unrelated texts of one field at 0.5-0.7), so its own threshold.
    cluster_embedding_similarity: float = Field(0.85, gt=0, le=1)


class LogConfig(StrictModel):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class PrometheusConfig(StrictModel):
    """Where ``mrt-engine run`` serves the Prometheus exposition (mrt_engine/prometheus.py)."""

    port: int = Field(ge=1, le=65535)
    # Loopback by default: the figures name sources and channels, not for every network.
    address: str = "127.0.0.1"


class ObservabilityConfig(StrictModel):
    prometheus: PrometheusConfig | None = None


class ConfigBase(StrictModel):
    """The fixed part of the schema; ``sources``, ``notify`` and ``rules`` are added on load."""

    poll_interval_seconds: Duration = Field(300.0, ge=1)
    watch_keywords: list[str] = Field(default_factory=list)
    state: StateConfig = Field(default_factory=StateConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)

    @field_validator("watch_keywords")
    @classmethod
    def _keywords_not_blank(cls, value: list[str]) -> list[str]:
        for i, word in enumerate(value):
            if not word.strip():
                raise ValueError(f"item {i} is blank")
        return value


@cache
def root_model() -> type[StrictModel]:
    """The full config model: the fixed part plus every registered source and channel section."""
    from mrt_engine import notify, sources
    from mrt_engine.ai.settings import AiConfig
    from mrt_engine.rules.model import RuleConfig

    source_fields: dict[str, Any] = {
        name: (kind.settings | None, None) for name, kind in sources.kinds().items()
    }
    channel_fields: dict[str, Any] = {
        name: (kind.settings | None, None) for name, kind in notify.kinds().items()
    }
    sources_model = create_model("SourcesConfig", __base__=StrictModel, **source_fields)
    notify_model = create_model("NotifyConfig", __base__=StrictModel, **channel_fields)
    return create_model(
        "Config",
        __base__=ConfigBase,
        sources=(sources_model, Field(default_factory=sources_model)),
        notify=(notify_model, Field(default_factory=notify_model)),
        rules=(list[RuleConfig], Field(default_factory=list)),
        ai=(AiConfig, Field(default_factory=AiConfig)),
    )


class Config:
    """A validated config, with the file it came from."""

    def __init__(self, model: Any, path: Path | None) -> None:
        self.model = model
        self.path = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    @property
    def store_location(self) -> Any:
        """Where the store is (a :class:`~mrt_engine.store.location.StoreLocation`):
        ``state.url``, else ``state.sqlite_path``; a relative SQLite path is taken from the
        config file's directory."""
        from mrt_engine.store.location import parse_location

        state = self.model.state
        base = self.path.parent if self.path is not None else None
        if state.url:
            return parse_location(state.url, password_env=state.password_env, base=base)
        return parse_location(Path(state.sqlite_path), base=base)

    @property
    def db_path(self) -> Path:
        """The SQLite file of the store (``state.sqlite_path``, or a ``sqlite:///`` URL); a
        relative path is taken from the config file's directory. Only for a SQLite store."""
        location = self.store_location
        if location.path is None:
            raise ValueError(f"the store is not a SQLite file: {location}")
        return location.path

    def source_sections(self) -> dict[str, Any]:
        """Configured source sections by platform name (unset ones omitted)."""
        sections = self.model.sources
        return {
            name: getattr(sections, name)
            for name in type(sections).model_fields
            if getattr(sections, name) is not None
        }

    def channel_sections(self) -> dict[str, Any]:
        """Configured channel sections by channel name (unset ones omitted)."""
        sections = self.model.notify
        return {
            name: getattr(sections, name)
            for name in type(sections).model_fields
            if getattr(sections, name) is not None
        }


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a config file. Raises :class:`ConfigError`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"file not found: {file}"], file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read {file}: {exc}"], file) from None
    data = parse_text(text, file)
    return validate(data, file)


def parse_text(text: str, file: Path | None = None) -> dict[str, Any]:
    """JSON for ``.json`` files, TOML for ``.toml``; otherwise whichever parses."""
    suffix = file.suffix.lower() if file else ""
    if suffix == ".toml":
        return _parse_toml(text, file)
    if suffix == ".json":
        return _parse_json(text, file)
    try:
        return _parse_json(text, file)
    except ConfigError:
        return _parse_toml(text, file)


_TOO_DEEP = "arrays or tables nested too deeply to be a config"


def _parse_json(text: str, file: Path | None) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"], file
        ) from None
    except RecursionError:  # the parser recurses once per level
        raise ConfigError([_TOO_DEEP], file) from None
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be an object, got {type(data).__name__}"], file)
    return data


def _parse_toml(text: str, file: Path | None) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax error: {exc}"], file) from None
    except RecursionError:
        raise ConfigError([_TOO_DEEP], file) from None


def validate(data: dict[str, Any], file: Path | None = None) -> Config:
    """Validate parsed config data against the full schema."""
    model = root_model()
    try:
        # Files a section names (notify.<channel>.template_file) are relative to the config's
        # directory.
        context = {"config_dir": file.parent if file is not None else None}
        parsed = model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, model, data), file) from None
    problems = _cross_checks(parsed)
    if problems:
        raise ConfigError(problems, file)
    return Config(parsed, file)


def _cross_checks(parsed: Any) -> list[str]:
    """Checks that span sections: rule names unique, routed channels configured."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    channels = {name for name in type(parsed.notify).model_fields if getattr(parsed.notify, name)}
    for i, rule in enumerate(parsed.rules):
        if rule.name in seen:
            problems.append(
                f'rules[{i}].name: duplicate rule name "{rule.name}" (see rules[{seen[rule.name]}])'
            )
        seen.setdefault(rule.name, i)
        for j, channel in enumerate(rule.channels or ()):
            if channel not in channels:
                known = ", ".join(sorted(channels)) or "none configured"
                problems.append(
                    f'rules[{i}].channels[{j}]: channel "{channel}" is not configured under notify ({known})'
                )
    if parsed.delivery.backoff_initial_seconds > parsed.delivery.backoff_max_seconds:
        problems.append(
            "delivery.backoff_initial_seconds: must not exceed delivery.backoff_max_seconds"
        )
    return problems


def key_path(loc: tuple[Any, ...]) -> str:
    """``('sources', 'github', 'repos', 1)`` -> ``sources.github.repos[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "union[")) or part in ("list", "dict"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a table/object",
    "model": "a table/object",
}


def format_errors(exc: ValidationError, model: type[BaseModel], data: Any) -> list[str]:
    """One line per pydantic error: the key path and what is wrong, in an operator's words."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = key_path(loc)
        kind = err["type"]
        given = err.get("input")
        if kind == "missing":
            message = "required key is missing"
        elif kind == "extra_forbidden":
            message = "unknown key" + _suggest(loc, model)
        elif kind.endswith("_type") or kind.endswith("_parsing"):
            wanted = next((w for k, w in _TYPE_WORDS.items() if kind.startswith(k)), None)
            message = f"expected {wanted}, got {_show(given)}" if wanted else err["msg"]
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            op = {
                "greater_than_equal": ">=",
                "greater_than": ">",
                "less_than_equal": "<=",
                "less_than": "<",
            }[kind]
            bound = next(iter(err.get("ctx", {}).values()), "?")
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            message = f"must be {op} {bound}, got {_show(given)}"
        elif kind == "finite_number":
            message = f"must be a finite number, got {_show(given)}"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            message = f"expected one of {expected}, got {_show(given)}"
        elif kind == "value_error":
            message = str(err.get("ctx", {}).get("error", err["msg"]))
        elif kind == "too_short" and isinstance(given, list) and not given:
            message = "must not be empty"
        else:
            message = err["msg"]
        lines.append(f"{path}: {message}")
    return lines


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, -inf, nan: as TOML writes them
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """`` (did you mean "repos"?)`` when the unknown key is close to a known one."""
    fields: dict[str, Any] | None = model.model_fields
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = (fields or {}).get(part)
        if info is None:
            return ""
        current = _model_of(info.annotation)
        fields = current.model_fields if current else None
    if not fields:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(fields), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found:
            return found
    return None
