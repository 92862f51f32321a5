"""An OpenAI-compatible server on 127.0.0.1: ``POST /v1/chat/completions`` and
``POST /v1/embeddings``, the two endpoints the optional AI uses (vLLM, SGLang, DeepSeek's and
Qwen's APIs answer them in this shape).

Shapes follow OpenAI's API reference: a ``chat.completion`` object (``choices[].message``,
``finish_reason``, ``usage`` with ``prompt_tokens``, ``completion_tokens``, ``total_tokens``),
a ``list`` of ``embedding`` objects (``usage`` with ``prompt_tokens`` and ``total_tokens``),
and errors as ``{"error": {"message", "type", "param", "code"}}``: 401 for a wrong key, 429
``rate_limit_exceeded`` with ``Retry-After``, 429 ``insufficient_quota`` when the quota is spent,
500 ``server_error``.

Modes (``mode``): ``deterministic`` (the default: answers are a function of the request),
``slow`` (each answer waits ``delay`` seconds first), ``failing`` (500 every time), ``garbage``
(200 with a body that is not JSON) and ``rate_limited`` (429 with Retry-After). A token
``quota`` makes the server answer 429 ``insufficient_quota`` once that many tokens were used.

Two test hooks: ``alike`` maps a text to another that it is embedded as (a real model puts two
sentences that mean the same near each other whatever their words; the hashed grams here do
not), and ``hold``, an event every embeddings answer waits for (at most a minute) while it is
clear, so a test can look at the caller while its request is in flight.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
DIMENSIONS = 256
MODES = ("deterministic", "slow", "failing", "garbage", "rate_limited")


def tokens(text: str) -> int:
    """A rough token count: a word, or a CJK character, is one token (what a tokenizer of the
    model would count differs; only the order of magnitude matters for budgets)."""
    return len(re.findall(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W_]+", text)) or 1


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A deterministic embedding: hashed character 3-grams (and words), L2-normalised, so texts
    that share words or characters are near (Chinese included) and a test's figures are stable."""
    vector = [0.0] * dimensions
    lowered = " " + " ".join(text.lower().split()) + " "
    grams = [lowered[i : i + 3] for i in range(max(len(lowered) - 2, 1))]
    grams += re.findall(r"[^\W_]+", lowered)
    for gram in grams:
        digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def error(status: int, message: str, kind: str, code: str | None, **headers: str) -> Response:
    """An error in OpenAI's shape."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response.json(body, status, headers or None)


class OpenAICompatSimulator(Simulator):
    """Chat completions and embeddings; ``api_key`` (when set) must come as a Bearer token."""

    def __init__(
        self,
        *,
        api_key: str | None = "sk-sim-key",
        mode: str = "deterministic",
        delay: float = 5.0,
        quota: int | None = None,
        retry_after: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.api_key = api_key
        self.mode = mode
        self.delay = delay
        self.quota = quota
        self.retry_after = retry_after
        self.tokens_used = 0
        # Test hook: a fixed reply for chat (else a summary-like echo of the last message).
        self.reply: str | None = None
        # Test hooks (see the module): texts embedded as others; an answer held until set.
        self.alike: dict[str, str] = {}
        self.hold: threading.Event | None = None
        self._count = threading.Lock()
        self.route("POST", re.escape(CHAT), self._chat)
        self.route("POST", re.escape(EMBEDDINGS), self._embeddings)

    @property
    def base_url(self) -> str:
        """What ``ai.base_url`` is set to: the ``/v1`` root."""
        return f"{self.url}/v1"

    # ------------------------------------------------------------------ common
    def _refuse(self, request: Request) -> Response | None:
        """An error to answer instead of the real one (key, mode, quota), or ``None``."""
        wanted = f"Bearer {self.api_key}"
        given = request.headers.get("authorization", "")
        if self.api_key is not None and given != wanted:
            # OpenAI's message names the key it got: a client must not log it as it is.
            shown = given.removeprefix("Bearer ") or "none"
            return error(
                401,
                f"Incorrect API key provided: {shown}.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if self.mode == "failing":
            return error(
                500,
                "The server had an error while processing your request.",
                "server_error",
                None,
            )
        if self.mode == "rate_limited":
            return error(
                429,
                "Rate limit reached for requests.",
                "requests",
                "rate_limit_exceeded",
                **{"Retry-After": str(self.retry_after)},
            )
        if self.mode == "garbage":
            return Response(200, b"<html>upstream gateway</html>", {"Content-Type": "text/html"})
        if self.quota is not None and self.tokens_used >= self.quota:
            return error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            )
        return None

    def _spend(self, used: int) -> None:
        with self._count:
            self.tokens_used += used

    def _answer(self, body: dict[str, Any]) -> Response:
        response = Response.json(body)
        if self.mode == "slow":
            response.delay = self.delay
        return response

    # ------------------------------------------------------------------ endpoints
    def _chat(self, request: Request, match: re.Match[str]) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            payload = request.json()
            messages = payload["messages"]
            model = payload["model"]
            texts = [str(m["content"]) for m in messages]
        except (ValueError, KeyError, TypeError):
            return error(
                400,
                "Invalid request: 'model' and 'messages' with 'content' are required.",
                "invalid_request_error",
                None,
            )
        prompt = "\n".join(texts)
        content = self.reply if self.reply is not None else _reply(texts[-1] if texts else "")
        used_prompt, used_completion = tokens(prompt), tokens(content)
        self._spend(used_prompt + used_completion)
        digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24]
        return self._answer(
            {
                "id": f"chatcmpl-{digest}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": used_prompt,
                    "completion_tokens": used_completion,
                    "total_tokens": used_prompt + used_completion,
                },
            }
        )

    def _embeddings(self, request: Request, match: re.Match[str]) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            payload = request.json()
            model = payload["model"]
            given = payload["input"]
            inputs = [given] if isinstance(given, str) else list(given)
            if not inputs or not all(isinstance(t, str) for t in inputs):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return error(
                400,
                "Invalid request: 'model' and 'input' (a string or strings) are required.",
                "invalid_request_error",
                None,
            )
        used = sum(tokens(t) for t in inputs)
        self._spend(used)
        if self.hold is not None:
            self.hold.wait(60)
        return self._answer(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": embed(self.alike.get(text, text)),
                    }
                    for i, text in enumerate(inputs)
                ],
                "model": model,
                "usage": {"prompt_tokens": used, "total_tokens": used},
            }
        )

    def chat_requests(self) -> list[Request]:
        return self.requests_to(CHAT)

    def embedding_requests(self) -> list[Request]:
        return self.requests_to(EMBEDDINGS)


def _reply(text: str) -> str:
    """A deterministic "summary": the first line of the text with content, prefixed, so a test
    can tell an AI summary from the extractive one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = next((line for line in lines if not line.endswith(":")), lines[-1] if lines else "")
    return f"AI: {first[:200]}"
