"""The ``[ai]`` section of the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from mrt_engine.config import StrictModel, Wait
from mrt_engine.sources.validators import ApiBase


class AiConfig(StrictModel):
    """An OpenAI-compatible endpoint for summaries and semantic rules; off by default."""

    enabled: bool = False
    base_url: ApiBase = "http://127.0.0.1:8000/v1"  # the ``/v1`` root of the API
    model: str = ""  # chat model (summaries); "" with AI enabled: no summaries by AI
    embedding_model: str = ""  # "" : semantic rules use local lexical similarity
    api_key_env: str | None = None  # the variable holding the key (none: a local server)
    timeout_seconds: Wait = Field(10.0, gt=0)  # one request, connect and reads included
    # The most a message waits for its summary (then it goes with the extractive one).
    summary_timeout_seconds: Wait = Field(5.0, gt=0)
    # The most semantic rules wait for embeddings in one poll (then: lexical similarity).
    embedding_timeout_seconds: Wait = Field(3.0, gt=0)
    requests_per_minute: int = Field(60, ge=1, le=100_000)
    daily_token_budget: int = Field(200_000, ge=0)  # 0: no AI requests at all
    max_input_chars: int = Field(4000, ge=200, le=200_000)  # of an event's text sent
    # AI4 triage (mrt_engine/ai/triage.py): a score 0-100 per alerted event moves its priority.
    triage: bool = False
    # The most one poll waits for the model's scores, all its events together (then: local).
    triage_timeout_seconds: Wait = Field(3.0, gt=0)
    triage_high_score: int = Field(70, ge=0, le=100)
    triage_low_score: int = Field(30, ge=0, le=100)
    triage_high_priority: int = Field(500, ge=-1000, le=1000)  # at least this: sent at once
    triage_low_priority: int = Field(-100, ge=-1000, le=1000)  # below a digest's below_priority


def describe(config: Any, environ: Mapping[str, str]) -> tuple[bool, str, str]:
    """``mrt-engine doctor``'s line on the optional AI: (ok, detail, hint)."""
    ai = config.ai
    topics = [r.name for r in config.rules if r.topic and r.enabled]
    lexical = f"{len(topics)} topic rule(s) ({', '.join(topics)})" if topics else ""
    clusters = config.incidents.cluster_similarity > 0  # AI3 (mrt_engine/incident_clusters.py)
    if not ai.enabled:
        detail = "off (the tracker works the same without it)"
        if lexical:
            detail += f"; {lexical} use local lexical similarity"
        if clusters:
            detail += "; incident clusters use local lexical similarity"
        return True, detail, ""
    if ai.api_key_env and not environ.get(ai.api_key_env, "").strip():
        return (
            False,
            f"ai.api_key_env: environment variable {ai.api_key_env} is not set",
            "set it, or remove ai.api_key_env for a local server without a key",
        )
    from mrt_engine.secrets import redact_url  # (a user, a password or a key in the URL)

    parts = [f"on: {redact_url(ai.base_url)}"]
    parts.append(f"summaries by {ai.model}" if ai.model else "summaries extractive (no ai.model)")
    how = (
        f"embeddings of {ai.embedding_model}"
        if ai.embedding_model
        else ("local lexical similarity (no ai.embedding_model)")
    )
    if lexical:
        parts.append(f"{lexical} judged by {how}")
    if clusters:
        parts.append(f"incident clusters judged by {how}")
    parts.append(f"budget {ai.daily_token_budget} tokens a day")
    return True, "; ".join(parts), ""
