"""``mrt-engine doctor --network``: each source's API and each channel's endpoint answer, the
clock agrees with the upstreams' ``Date``, and with ``--send-test`` each channel takes a test
message.

A source is asked the way polling asks it: its own ``poll`` runs, on an empty state, through
the engine's :class:`~mrt_engine.http.HttpClient` with the source's headers (its token), and is
stopped at its first answer. So doctor knows no platform's URLs: a source's first request is
whatever its code makes, and one request is all a source costs (no retries: doctor wants the
answer, not the engine's patience). Nothing is stored.
"""

from __future__ import annotations

import secrets as pysecrets
import socket
import time
from email.utils import parsedate_to_datetime
from typing import Any

from mrt_engine.http import AuthError, Fetched, FetchError, HttpClient, PollSession, RateLimited
from mrt_engine.secrets import redact, redact_url


class _Answered(BaseException):
    """Ends a probing poll at its first answer. A BaseException, like ``GeneratorExit``: it is
    control flow, and no source's ``except Exception`` may take it for a failure."""

    def __init__(self, fetched: Fetched, at: Any) -> None:
        super().__init__()
        self.fetched = fetched
        self.at = at


class _FirstAnswer(PollSession):
    """A poll's HTTP view that makes the poll's first request and then stops the poll."""

    def __init__(self, client: HttpClient, clock: Any) -> None:
        super().__init__(client)
        self.clock = clock

    def request(self, method: str, url: str, **kwargs: Any) -> Fetched:
        fetched = super().request(method, url, **kwargs)
        raise _Answered(fetched, self.clock())


def check(doctor: Any, config: Any, components: Any) -> None:
    """Add the network checks of ``components`` (built from ``config``) to ``doctor``."""
    dates: list[tuple[str, Any, Any]] = []  # (host, the answer's Date, our clock then)
    if doctor.network:
        _sources(doctor, config, components.sources, dates)
        if dates:
            _upstream_clock(doctor, dates)
    timeout = config.delivery.request_timeout_seconds
    for name, channel in components.channels.items():
        if doctor.network:
            _probe_channel(doctor, name, channel, timeout)
        if doctor.send_test:
            _send_test(doctor, name, channel)


def _sources(doctor: Any, config: Any, sources: list[Any], dates: list) -> None:
    from mrt_engine import sources as platforms
    from mrt_engine.sources.base import SourceState

    http = HttpClient(
        config.http.model_copy(update={"max_retries": 0}),
        clock=doctor.clock,
        poll_deadline_seconds=config.http.request_deadline_seconds,
    )
    try:
        for source in sources:
            http.set_host_defaults(
                source.api_base, platforms.kinds()[source.platform].host_defaults
            )
        for source in sources:
            name, key = "source", source.key
            started = time.monotonic()
            try:
                source.poll(SourceState(), _FirstAnswer(http, doctor.clock), doctor.clock())
            except _Answered as answer:
                got = answer.fetched
                took = (time.monotonic() - started) * 1000
                doctor.add(
                    name,
                    True,
                    f"HTTP {got.status} from {redact_url(got.url)} ({took:.0f} ms)",
                    subject=key,
                )
                stamp = got.headers.get("date")
                if stamp:
                    dates.append((_host(got.url), stamp, answer.at))
            except AuthError as exc:
                doctor.add(
                    name,
                    False,
                    str(exc),
                    "the token was refused: check the variable the source's token_env names",
                    subject=key,
                )
            except RateLimited as exc:
                doctor.add(name, False, str(exc), "wait, or give the source a token", key)
            except FetchError as exc:
                doctor.add(name, False, str(exc), _reach_hint(source), key)
            except Exception as exc:  # a source's bug must not end doctor
                doctor.add(name, False, f"{type(exc).__name__}: {exc}", _reach_hint(source), key)
            else:
                doctor.add(name, True, "polled without a request", subject=key)
    finally:
        http.close()


def _reach_hint(source: Any) -> str:
    return (
        f"check that {redact_url(source.api_base)} is reachable from here (DNS, proxy,"
        " firewall) and the source's api_base"
    )


def _host(url: str) -> str:
    """``host[:port]`` of ``url``: never its userinfo (an api_base may carry a user:password)."""
    from urllib.parse import urlsplit

    return urlsplit(url).netloc.rpartition("@")[2]


def _upstream_clock(doctor: Any, dates: list[tuple[str, Any, Any]]) -> None:
    tolerance = doctor.limits.clock_tolerance
    worst = None
    for host, stamp, at in dates:
        try:
            theirs = parsedate_to_datetime(stamp)
        except (TypeError, ValueError, OverflowError):  # a year or offset past any integer
            continue
        if theirs.tzinfo is None:
            continue
        skew = theirs - at  # > 0: our clock is behind theirs
        if worst is None or abs(skew) > abs(worst[1]):
            worst = (host, skew)
    if worst is None:
        doctor.add("upstream clock", True, "no upstream answer carried a readable Date")
        return
    host, skew = worst
    seconds = skew.total_seconds()
    if abs(skew) > tolerance:
        way = "behind" if seconds > 0 else "ahead of"
        doctor.add(
            "upstream clock",
            False,
            f"the system clock is {abs(seconds) / 60:.0f} min {way} the Date of {host}'s answer",
            "set the clock right (NTP: `timedatectl status`)",
        )
    else:
        doctor.add(
            "upstream clock",
            True,
            f"within {abs(seconds):.0f} s of the upstreams' Date (largest: {host})",
        )


def _probe_channel(doctor: Any, name: str, channel: Any, timeout: float) -> None:
    where = channel.describe()
    try:
        result = channel.probe(timeout)
    except Exception as exc:  # a channel's bug must not end doctor
        doctor.add("channel", False, f"{where}: {type(exc).__name__}: {exc}", subject=name)
        return
    if result is None:
        doctor.add("channel", True, f"{where}: no single endpoint to check", subject=name)
    elif result.ok:
        doctor.add("channel", True, f"{where}: answers ({result.reply})", subject=name)
    else:
        doctor.add(
            "channel",
            False,
            f"{where}: {result.error}",
            f"check notify.{name} and the variable holding its URL; is it reachable from here?",
            name,
        )


def test_message() -> Any:
    """What ``--send-test`` sends: marked as a test in its title, a fingerprint of its own
    (a channel that dedupes by it never takes two runs for one message)."""
    from mrt_engine.notify.base import Outgoing
    from mrt_engine.notify.message import MessageContext

    host = socket.gethostname()
    context = MessageContext(
        event_type="doctor_test",
        source_key="mrt-engine doctor",
        resource_id="doctor",
        title=f"[TEST] mrt-engine doctor on {host}: this channel works, nothing to do",
        url="",
        fingerprint=pysecrets.token_hex(32),
        summary="A test message sent by `mrt-engine doctor --send-test`; it is not an alert.",
    )
    return Outgoing(delivery_id=0, attempt=1, context=context)


def _send_test(doctor: Any, name: str, channel: Any) -> None:
    try:
        result = channel.send(test_message())
    except Exception as exc:  # send() never raises by contract; doctor holds even if it does
        result = None
        error = f"{type(exc).__name__}: {exc}"
    else:
        error = result.error or ""
    if result is not None and result.ok:
        doctor.add("test message", True, f"sent ({result.reply or 'accepted'})", subject=name)
    else:
        doctor.add(
            "test message",
            False,
            redact(error) or "refused",
            f"the channel's own answer says why: check notify.{name}",
            name,
        )
