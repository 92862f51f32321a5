"""The ``[ai]`` section of the config."""

from __future__ import annotations

from pydantic import Field

from mrt_engine.config import StrictModel, Wait


class AiConfig(StrictModel):
    """An OpenAI-compatible endpoint for summaries and semantic rules; off by default."""

    enabled: bool = False
    base_url: str = "http://127.0.0.1:8000/v1"  # the ``/v1`` root of the API
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
