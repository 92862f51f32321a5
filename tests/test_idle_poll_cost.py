"""What an unchanged poll does, and what it no longer does.

An answer that sets no cookie is not copied into the cookie jar; one that does still has its
cookie sent back.
"""

from __future__ import annotations

import http.cookiejar
from datetime import UTC, datetime

from mrt_engine.simulators.base import Request, Response
from mrt_engine.simulators.github import GitHubSimulator

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


class CookieGitHub(GitHubSimulator):
    """GitHub behind a front that sets a cookie on the answers to one path."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cookie_path = ""

    def decorate(self, request: Request, response: Response, *, fault: bool) -> Response:
        response = super().decorate(request, response, fault=fault)
        if self.cookie_path and request.path == self.cookie_path:
            response.headers["Set-Cookie"] = "front=abc123; Path=/"
        return response


def test_an_answer_without_a_cookie_is_not_copied_into_the_cookie_jar(
    make_tracker, welink, monkeypatch
):
    from conftest import GH_TOKEN

    github = CookieGitHub(token=GH_TOKEN).start()
    try:
        github.add_issue(REPO, "seed", at=T0)
        tracker = make_tracker(
            {
                "sources": {
                    "github": {
                        "repos": [REPO],
                        "token_env": "GH",
                        "api_base": github.url,
                        "monitor": {"pulls": False},
                    }
                },
            },
            {"GH": GH_TOKEN},
        )
        assert tracker.once() == 0 and tracker.once() == 0
        handed: list[object] = []
        extract = http.cookiejar.CookieJar.extract_cookies

        def counted(jar, response, request):
            handed.append(response)
            return extract(jar, response, request)

        monkeypatch.setattr(http.cookiejar.CookieJar, "extract_cookies", counted)
        engine = tracker.engine()
        engine.open()
        try:
            source = engine.sources[0]
            for _ in range(3):
                assert engine.poll_source(source).status == "not_modified"
            assert handed == []
            # An answer that sets one: the cookie is kept and sent back, as before.
            github.cookie_path = f"/repos/{REPO}/issues"
            assert engine.poll_source(source).status == "not_modified"
            assert len(handed) == 1
            github.cookie_path = ""
            assert engine.poll_source(source).status == "not_modified"
            assert github.requests[-1].headers.get("cookie") == "front=abc123"
        finally:
            engine.close()
    finally:
        github.stop()
