"""The AI client: OpenAI-compatible chat and embeddings, with a cache, a daily token budget, a
request rate limit and deadlines; every failure is a recorded, logged fallback (``None``).

Nothing here raises into the engine: a timeout, a 401, a 429 (its ``Retry-After`` pauses the
AI), a 5xx, an answer that is not the documented JSON, a spent budget or a store error each
return ``None`` with the reason logged once and counted in ``ai_usage``; the caller then does
what the tracker does without AI. The API key comes only from the environment variable the
config names, goes only into the ``Authorization`` header, and is registered with
:mod:`mrt_engine.secrets` so no log line or stored reason can hold it.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from mrt_engine.ai import ledger
from mrt_engine.ai.settings import AiConfig
from mrt_engine.http_deadline import Deadline, DeadlineBackend, install, within
from mrt_engine.secrets import Secret, SecretResolver, shorten
from mrt_engine.store.db import Store
from mrt_engine.text import storable
from mrt_engine.timeutil import Clock, utcnow

log = logging.getLogger(__name__)

# After a 429 without Retry-After, or an exhausted quota, the AI rests this long.
DEFAULT_PAUSE_SECONDS = 60.0
QUOTA_PAUSE_SECONDS = 3600.0
# The most tokens one answer is counted for: a server's absurd ``usage`` spends the day's budget
# without overflowing the store's integer columns (which would lose the count and the cache).
MAX_ANSWER_TOKENS = 2**31 - 1
# The most of a chat answer kept (and cached): a task reads a few lines or a number, and a server
# that ignores ``max_tokens`` must not fill the store or the message's markdown reading.
MAX_ANSWER_CHARS = 20_000


class AiFailure(Exception):
    """One request failed; the message is the fallback's reason (no secret in it)."""

    def __init__(self, reason: str, pause: float = 0.0) -> None:
        super().__init__(reason)
        self.pause = pause


@dataclass(frozen=True)
class Answer:
    """What a task got: the text (or vectors), and whether it came from the cache."""

    text: str = ""
    vectors: tuple[tuple[float, ...], ...] = ()
    cached: bool = False
    tokens: int = 0


class AiClient:
    """One endpoint's chat and embeddings for every AI task of an engine (thread-safe)."""

    def __init__(
        self,
        config: AiConfig,
        store: Store,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock = utcnow,
        stop: threading.Event | None = None,
        user_agent: str = "model-release-tracker",
    ) -> None:
        import os

        self.config = config
        self.store = store
        self.clock = clock
        self.stop = stop
        resolver = SecretResolver(os.environ if environ is None else environ)
        self._key: Secret | None = resolver.get(
            config.api_key_env, where="ai.api_key_env", what="the AI API key", required=False
        )
        for warning in resolver.warnings + resolver.errors:
            log.warning("%s", warning)
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/",
            timeout=config.timeout_seconds,
            headers={"User-Agent": user_agent},
            follow_redirects=False,
            trust_env=False,  # a local endpoint must not go through a proxy of the environment
        )
        self._backend = DeadlineBackend()
        install(self._http, self._backend)
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()  # monotonic times of the last minute's requests
        self._paused_until = 0.0  # monotonic: after a 429, no request before this
        self.fallbacks = 0  # this process's (the store counts every process's)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def close(self) -> None:
        """Stop every request in flight and let go of the connections."""
        self._backend.cut()
        self._http.close()

    # ------------------------------------------------------------------ tasks
    def chat(
        self, task: str, messages: Sequence[dict[str, str]], *, timeout: float, max_tokens: int
    ) -> Answer | None:
        """The reply to ``messages`` for ``task`` (cached by its text); ``None``: fall back."""
        model = self.config.model
        if not self.enabled or not model:
            return None
        # Events keep an upstream's lone surrogate ("\\ud800") until stored: no body carries it.
        messages = [{**m, "content": storable(m["content"])} for m in messages]
        key = chat_key(messages)
        found = self._cached(task, model, key)
        if found is not None:
            return Answer(text=found, cached=True)
        body = {
            "model": model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": False,
        }
        reply = self._request(task, "chat/completions", body, timeout)
        if reply is None:
            return None
        data, tokens = reply
        try:
            text = data["choices"][0]["message"]["content"]
            if not isinstance(text, str) or not text.strip():
                raise TypeError("no text")
            # A lone surrogate (JSON's "\\ud800") no UTF-8 encodes: no message could carry it.
            text = storable(text[:MAX_ANSWER_CHARS])
        except (KeyError, IndexError, TypeError) as exc:
            return self._fallback(task, f"the answer has no message content ({exc})")
        self._remember(task, model, key, text, tokens)
        return Answer(text=text, tokens=tokens)

    def lookup(self, task: str, messages: Sequence[dict[str, str]]) -> Answer | None:
        """The cached reply to ``messages`` for ``task``, or ``None``: no request is made and
        nothing is written (what ``mrt-engine preview`` shows without asking the model)."""
        model = self.config.model
        if not self.enabled or not model:
            return None
        messages = [{**m, "content": storable(m["content"])} for m in messages]  # (as chat's)
        try:
            found = ledger.cached(self.store, task, model, chat_key(messages))
        except Exception as exc:
            log.warning("AI cache could not be read: %s", shorten(exc, 300))
            return None
        return None if found is None else Answer(text=found, cached=True)

    def embed(self, task: str, texts: Sequence[str], *, timeout: float) -> Answer | None:
        """One vector per text, in order (each cached by its text); ``None``: fall back."""
        model = self.config.embedding_model
        if not self.enabled or not model:
            return None
        texts = [storable(t) for t in texts]  # (as chat's)
        keys = [ledger.content_hash(t) for t in texts]
        vectors: dict[int, tuple[float, ...]] = {}
        for i, key in enumerate(keys):
            found = self._cached(task, model, key)
            if found is not None:
                vectors[i] = unpack(found)
        missing = [i for i in range(len(texts)) if i not in vectors]
        tokens = 0
        if missing:
            body = {
                "model": model,
                "input": [texts[i] for i in missing],
                "encoding_format": "float",
            }
            reply = self._request(task, "embeddings", body, timeout)
            if reply is None:
                return None
            data, tokens = reply
            try:
                rows = sorted(data["data"], key=lambda row: row["index"])
                got = [tuple(float(x) for x in row["embedding"]) for row in rows]
                if len(got) != len(missing) or not all(got):
                    raise ValueError(f"{len(got)} vectors for {len(missing)} texts")
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                # ArithmeticError: a number too large for a float (an integer of 400 digits)
                return self._fallback(task, f"the answer has no usable embeddings ({exc})")
            for i, vector in zip(missing, got, strict=True):
                stored = pack(vector)
                vectors[i] = unpack(stored)  # as a cached one reads: the same scores either way
                self._remember(task, model, keys[i], stored, 0)
        ordered = tuple(vectors[i] for i in range(len(texts)))
        return Answer(vectors=ordered, cached=not missing, tokens=tokens)

    # ------------------------------------------------------------------ the request
    def _request(
        self, task: str, path: str, body: dict[str, Any], timeout: float
    ) -> tuple[dict[str, Any], int] | None:
        """POST ``body``; the answer's JSON and its tokens, or ``None`` after a fallback."""
        refused = self._refusal()
        if refused:
            return self._fallback(task, refused)
        headers = {"Content-Type": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        try:
            data, tokens = self._post(
                path, body, headers, min(timeout, self.config.timeout_seconds)
            )
        except AiFailure as exc:
            if exc.pause:
                with self._lock:
                    self._paused_until = max(self._paused_until, time.monotonic() + exc.pause)
            return self._fallback(task, str(exc))
        except Exception as exc:  # e.g. a key no header can carry (not ASCII): never raised on
            return self._fallback(task, f"the request failed: {type(exc).__name__}: {exc}")
        try:
            ledger.count(self.store, self.clock(), tokens=tokens, requests=1)
        except Exception as exc:  # the answer is good; only its count is lost
            log.warning("AI usage could not be recorded: %s", shorten(exc, 300))
        return data, tokens

    def _refusal(self) -> str | None:
        """Why no request may go now (pause, rate, budget), or ``None``; counts the request."""
        now = time.monotonic()
        with self._lock:
            if now < self._paused_until:
                return f"paused after a 429 for {self._paused_until - now:.0f}s more"
            while self._sent and self._sent[0] <= now - 60:
                self._sent.popleft()
            if len(self._sent) >= self.config.requests_per_minute:
                return f"request rate limit of {self.config.requests_per_minute} a minute reached"
        budget = self.config.daily_token_budget
        try:
            used = ledger.spent(self.store, self.clock())
        except Exception as exc:
            return f"the day's token count could not be read: {shorten(exc, 200)}"
        if used >= budget:
            return f"daily token budget spent ({used} of {budget} tokens, ai.daily_token_budget)"
        with self._lock:
            self._sent.append(now)
        return None

    def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], timeout: float
    ) -> tuple[dict[str, Any], int]:
        """One POST under a deadline of ``timeout`` seconds; raises :class:`AiFailure`."""
        deadline = Deadline(time.monotonic() + timeout, self.stop)
        try:
            with within(deadline):
                response = self._http.post(
                    path, json=body, headers=headers, timeout=httpx.Timeout(timeout)
                )
        except httpx.TimeoutException:
            raise AiFailure(f"no answer within {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise AiFailure(f"request failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise _status_failure(response)
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):  # RecursionError: arrays nested 100,000 deep
            kind = response.headers.get("content-type", "no content type")
            raise AiFailure(f"the answer is not JSON ({kind})") from None
        usage = data.get("usage")
        tokens = 0
        if isinstance(usage, dict):
            total = usage.get("total_tokens")
            if not isinstance(total, int):  # some servers give only the parts
                parts = ("prompt_tokens", "completion_tokens")
                total = sum(usage.get(p) or 0 for p in parts if isinstance(usage.get(p), int))
            tokens = min(max(total, 0), MAX_ANSWER_TOKENS)
        return data, tokens

    # ------------------------------------------------------------------ cache and record
    def _cached(self, task: str, model: str, key: str) -> str | None:
        try:
            return ledger.cached(self.store, task, model, key, self.clock())
        except Exception as exc:
            log.warning("AI cache could not be read: %s", shorten(exc, 300))
            return None

    def _remember(self, task: str, model: str, key: str, result: str, tokens: int) -> None:
        try:
            ledger.remember(self.store, task, model, key, result, tokens, self.clock())
        except Exception as exc:
            log.warning("AI answer could not be cached: %s", shorten(exc, 300))

    def _fallback(self, task: str, reason: str) -> None:
        """Log and count a fallback; always ``None`` (what the task then returns)."""
        reason = shorten(reason, 300)
        self.fallbacks += 1
        log.warning("AI %s fell back to the local way: %s", task, reason)
        try:
            ledger.count(self.store, self.clock(), fallback=f"{task}: {reason}")
        except Exception as exc:
            log.warning("AI fallback could not be recorded: %s", shorten(exc, 300))
        return None


def chat_key(messages: Sequence[dict[str, str]]) -> str:
    """The cache key of a chat's messages."""
    return ledger.content_hash(*(m["role"] + "\n" + m["content"] for m in messages))


def pack(vector: tuple[float, ...]) -> str:
    """A vector as stored: float32, base64 (a fifth of its JSON: a 1024-dimension embedding
    takes 5.5 KB, not 20)."""
    return base64.b64encode(array("f", vector).tobytes()).decode("ascii")


def unpack(text: str) -> tuple[float, ...]:
    values = array("f")
    values.frombytes(base64.b64decode(text))
    return tuple(values)


def _status_failure(response: httpx.Response) -> AiFailure:
    """An error answer in OpenAI's shape (``{"error": {"message", "type", "code"}}``) as a
    failure; a 429 pauses the AI for its Retry-After (an exhausted quota for an hour)."""
    status = response.status_code
    code = kind = message = ""
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            kind = str(error.get("type") or "")
            message = str(error.get("message") or "")
    except (ValueError, AttributeError):
        pass
    what = f"HTTP {status}" + (f" {code or kind}" if code or kind else "")
    if message:
        what += f": {message}"
    pause = 0.0
    if status == 429:
        if "insufficient_quota" in (code, kind):
            pause = QUOTA_PAUSE_SECONDS
        else:
            pause = _retry_after(response.headers.get("retry-after"))
    return AiFailure(what, pause)


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (seconds only; a date or garbage: the default)."""
    try:
        seconds = float(value) if value is not None else DEFAULT_PAUSE_SECONDS
    except ValueError:
        return DEFAULT_PAUSE_SECONDS
    return min(max(seconds, 0.0), QUOTA_PAUSE_SECONDS)
