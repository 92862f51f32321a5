"""One POST of a channel (mrt_engine/notify/_post.py), against a real server on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from mrt_engine.notify._post import Poster
from mrt_engine.notify.base import SendResult
from mrt_engine.simulators.base import Response, Simulator


@pytest.fixture
def server():
    sim = Simulator()
    sim.route("POST", "/hook", lambda request, match: Response.json({"ok": True}))
    sim.start()
    yield sim
    sim.stop()


def test_a_channels_own_headers_go_with_every_post_and_a_sends_header_replaces_one(server):
    poster = Poster(
        "the test",
        5,
        "notify.test.timeout_seconds",
        {"Content-Type": "application/json", "User-Agent": "model-release-tracker/test"},
    )
    try:
        first = poster.post(f"{server.url}/hook", b'{"n": 1}', {"webhook-id": "msg_1"})
        second = poster.post(
            f"{server.url}/hook", b'{"n": 2}', {"content-type": "text/plain", "webhook-id": "2"}
        )
    finally:
        poster.close()
    assert isinstance(first, httpx.Response) and first.status_code == 200
    assert isinstance(second, httpx.Response) and second.status_code == 200
    one, two = server.requests
    assert one.body == b'{"n": 1}' and two.body == b'{"n": 2}'
    assert one.headers["content-type"] == "application/json"
    assert one.headers["user-agent"] == "model-release-tracker/test"
    assert one.headers["webhook-id"] == "msg_1"
    # What httpx's client sends with every request stays (keep-alive, compression, length).
    assert one.headers["accept-encoding"].startswith("gzip")
    assert one.headers["content-length"] == "8"
    assert two.headers["content-type"] == "text/plain"  # this send's own value
    assert two.headers["user-agent"] == "model-release-tracker/test"
    assert two.headers["webhook-id"] == "2"


def test_a_post_to_a_closed_port_is_a_failed_send_result_not_an_exception():
    poster = Poster("the test", 2, "notify.test.timeout_seconds")
    try:
        result = poster.post("http://127.0.0.1:9/hook", b"{}", {})
    finally:
        poster.close()
    assert isinstance(result, SendResult) and not result.ok
    assert result.error and "ConnectError" in result.error


def test_a_url_with_a_user_and_password_posts_with_basic_auth(server):
    poster = Poster("the test", 5, "notify.test.timeout_seconds")
    host = server.url.removeprefix("http://")
    try:
        response = poster.post(f"http://hook-user:hook-pass@{host}/hook", b"{}", {})
    finally:
        poster.close()
    assert isinstance(response, httpx.Response) and response.status_code == 200
    # base64("hook-user:hook-pass")
    assert server.requests[0].headers["authorization"] == "Basic aG9vay11c2VyOmhvb2stcGFzcw=="


def test_a_redirect_is_an_answer_not_followed(server):
    server.route("POST", "/moved", lambda request, match: Response(302, b"", {"Location": "/hook"}))
    poster = Poster("the test", 5, "notify.test.timeout_seconds")
    try:
        response = poster.post(f"{server.url}/moved", b"{}", {})
    finally:
        poster.close()
    assert isinstance(response, httpx.Response) and response.status_code == 302
    assert [r.path for r in server.requests] == ["/moved"]
