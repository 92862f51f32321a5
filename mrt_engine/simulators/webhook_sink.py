"""A Standard Webhooks receiver: verifies each request as the spec tells a consumer to, and
records what it accepted.

Written from spec/standard-webhooks.md ("Verifying signatures"), independently of
:mod:`mrt_engine.notify.webhook` (tests check it against the spec's own test vector): the
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers must be present, the
timestamp an integer within ``tolerance`` seconds of now (older ones are replays), one of the
space-separated ``v1,<base64>`` signatures the HMAC-SHA256 of ``id.timestamp.body`` under the
secret (compared in constant time), and the body JSON. A ``webhook-id`` seen before is
acknowledged with 200 and not processed again (the spec's idempotency key). Refusals are 400
(malformed) or 401 (signature), with a JSON ``{"error": ...}``; other failures are injected as
:class:`~mrt_engine.simulators.base.Fault` s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator

PATH = "/hooks/mrt"


class Refused(Exception):
    """Why a request fails verification, and the status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def verify(
    secret: str, headers: dict[str, str], body: bytes, *, now: float, tolerance: float
) -> Any:
    """The parsed body of a request that passes Standard Webhooks verification; else
    :class:`Refused`. ``headers`` have lower-case names."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise Refused(400, "missing required headers")
    if "." in msg_id:
        raise Refused(400, "webhook-id must not contain '.'")
    if not re.fullmatch(r"[0-9]+", stamp):
        raise Refused(400, "webhook-timestamp must be integer seconds")
    if int(stamp) < now - tolerance:
        raise Refused(401, "message timestamp too old")
    if int(stamp) > now + tolerance:
        raise Refused(401, "message timestamp too new")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    for versioned in signatures.split(" "):
        version, _, encoded = versioned.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            try:
                return json.loads(body)
            except ValueError:
                raise Refused(400, "body is not JSON") from None
    raise Refused(401, "no matching signature found")


@dataclass
class Delivered:
    msg_id: str
    timestamp: int
    headers: dict[str, str]
    body: bytes
    payload: Any
    at: float


class WebhookSink(Simulator):
    """Verified messages land in ``messages``; a repeated ``webhook-id`` in ``duplicates``."""

    def __init__(
        self,
        *,
        secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        tolerance: float = 300.0,
        record_requests: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.secret = secret
        self.tolerance = tolerance
        self.record_requests = record_requests  # a benchmark keeps only the count
        self.messages: list[Delivered] = []
        self.duplicates: list[Delivered] = []
        self.refused: list[tuple[int, str]] = []
        self.count = 0
        self._seen: set[str] = set()
        self.route("POST", re.escape(PATH), self._receive)

    @property
    def hook_url(self) -> str:
        return f"{self.url}{PATH}"

    def dispatch(self, request: Request) -> Response:
        response = super().dispatch(request)
        if not self.record_requests:
            with self.lock:
                self.requests.clear()
        return response

    def _receive(self, request: Request, match: re.Match[str]) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._refuse(415, "content-type must be application/json")
        try:
            payload = verify(
                self.secret,
                request.headers,
                request.body,
                now=time.time(),
                tolerance=self.tolerance,
            )
        except Refused as exc:
            return self._refuse(exc.status, str(exc))
        headers = request.headers
        delivered = Delivered(
            headers["webhook-id"],
            int(headers["webhook-timestamp"]),
            dict(headers),
            request.body,
            payload if self.record_requests else None,
            time.time(),
        )
        with self.lock:
            self.count += 1
            if delivered.msg_id in self._seen:
                self.duplicates.append(delivered)
                return Response(200, b"", {})
            self._seen.add(delivered.msg_id)
            if self.record_requests:
                self.messages.append(delivered)
        return Response(204, b"", {})

    def _refuse(self, status: int, reason: str) -> Response:
        with self.lock:
            self.refused.append((status, reason))
        return Response.json({"error": reason}, status)
