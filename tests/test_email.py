"""E-mail on the wire (RFC 5321/5322) and what an operator is told when the server is set up
differently from the config: against real aiosmtpd servers, which enforce RFC line lengths."""

from __future__ import annotations

import email
import email.policy
import smtplib
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import SmtpServer, free_port
from pydantic import ValidationError

from mrt_engine.notify.base import ChannelContext, Outgoing
from mrt_engine.notify.email import EmailChannel, EmailSettings, build
from mrt_engine.notify.message import MessageContext, render
from mrt_engine.secrets import SecretResolver

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PASSWORD = "smtp-pass-123"
ENV = {"SMTP_USER": "mrt-bot", "SMTP_PASS": PASSWORD}


def channel(server: SmtpServer, *, login: bool = True, env=ENV, **extra) -> EmailChannel:
    """The e-mail channel as the engine builds it from ``notify.email``."""
    settings = EmailSettings(
        smtp_host=server.host,
        smtp_port=server.port,
        from_addr="mrt@tracker.example",
        to_list=extra.pop("to_list", ["oncall@example.com", "lead@example.com"]),
        ca_file=extra.pop("ca_file", server.ca_file or None),
        timeout_seconds=extra.pop("timeout_seconds", 5),
        **({"user_env": "SMTP_USER", "password_env": "SMTP_PASS"} if login else {}),
        **extra,
    )
    built = build(settings, ChannelContext(SecretResolver(env), request_timeout=5))
    assert isinstance(built, EmailChannel)
    return built


def alert(**fields) -> MessageContext:
    values = {
        "event_type": "advisory_published",
        "source_key": "osv:PyPI",
        "resource_id": "GHSA-4x9q-8wq2-7c5m",
        "title": "vllm: remote code execution through a crafted model config",
        "url": "https://osv.dev/vulnerability/GHSA-4x9q-8wq2-7c5m",
        "fingerprint": "0123456789abcdef" * 4,
        "rules": ("vllm",),
        "reasons": ('keyword "vllm" in title',),
        **fields,
    }
    return MessageContext(**values)


def received(server: SmtpServer) -> tuple[bytes, email.message.EmailMessage]:
    """The one message the server accepted: its bytes after dot-unstuffing, and parsed."""
    [envelope] = server.messages
    raw = envelope.original_content
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def body_text(message: email.message.EmailMessage) -> str:
    # The body travels with CRLF line ends; a reader sees lines.
    return message.get_content().replace("\r\n", "\n")


# ---------------------------------------------------------------------- item 7: on the wire
def test_the_test_smtp_server_refuses_a_line_over_1000_octets(smtp):
    # Guard for the tests below: the fixture must be as strict as RFC 5321 §4.5.3.1.6.
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        client.starttls(context=ssl.create_default_context(cafile=smtp.ca_file))
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\n" + b"y" * 1100)
    assert refused.value.smtp_code == 500 and b"Line too long" in refused.value.smtp_error


def test_a_30_kb_alert_with_cjk_and_long_lines_arrives_intact(smtp):
    paragraph = "模型 DeepSeek-V4 发布：权重、评测与部署说明。" * 40  # one 1,000+ character line
    summary = "\n".join(
        [
            "Affected: " + ", ".join(f"vllm==0.{n}" for n in range(300)),
            paragraph,
            ".",
            ".env and .git are not copied",
            "..double dot",
            "x" * 5000,
            *(f"line {i}: Qwen3 {'ü' * (i % 7)} — note" for i in range(600)),
        ]
    )
    context = alert(
        title="模型权重远程代码执行 " + "A" * 170,
        summary=summary,
        labels=tuple(f"tag-{i}-text-generation" for i in range(20)),
    )
    text = render(context, None)
    assert len(text.encode()) > 30_000

    result = channel(smtp).send(Outgoing(7, 1, context))

    assert result.ok, result.error
    raw, message = received(smtp)
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines), "a bare CR or LF"
    assert max(len(line) for line in lines) <= 998
    assert raw.isascii()  # no server needs 8BITMIME or SMTPUTF8
    assert body_text(message) == text + "\n"
    assert "https://osv.dev/vulnerability/GHSA-4x9q-8wq2-7c5m" in body_text(message)


def test_a_line_that_starts_with_a_dot_survives_dot_stuffing(smtp):
    context = alert(summary=".\n.hidden\n..two dots\nend.")

    assert channel(smtp).send(Outgoing(8, 1, context)).ok

    _, message = received(smtp)
    assert "\n.\n.hidden\n..two dots\nend.\n" in body_text(message)


def test_a_long_cjk_subject_and_forty_recipients_are_folded_headers(smtp):
    source_key = "feed:" + "模型发布公告" * 30
    recipients = [f"team-{i:02d}@example.com" for i in range(40)]

    result = channel(smtp, to_list=recipients).send(Outgoing(9, 1, alert(source_key=source_key)))

    assert result.ok, result.error
    raw, message = received(smtp)
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in header_lines) <= 78  # RFC 5322 §2.1.1 "SHOULD"
    assert message["Subject"] == f"[MRT] Security advisory · {source_key}"
    assert [a.addr_spec for a in message["To"].addresses] == recipients
    assert smtp.messages[0].rcpt_tos == recipients


def test_a_realistic_github_alert_over_1000_bytes_is_delivered_to_three_recipients(
    gh_tracker, github, smtp
):
    recipients = ["oncall@example.com", "lead@example.com", "ml-infra@example.com"]
    tracker = gh_tracker(
        {
            "notify": {
                "email": {
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                    "from_addr": "mrt@tracker.example",
                    "to_list": recipients,
                    "ca_file": smtp.ca_file,
                }
            }
        }
    )
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    title = "[Bug]: DeepSeek-V3 " + "FP8 block-wise quantised MoE kernels crash on Hopper " * 3
    title = title[:180].rstrip()
    github.add_issue(
        REPO,
        title,
        body="Steps to reproduce:\n" + "python -m vllm.entrypoints.openai.api_server " * 10,
        labels=tuple(f"area/{name}" for name in "abcdefghijklmnopqrst"),
    )

    tracker.once()

    status = tracker.sql("SELECT status, last_error FROM delivery WHERE channel = 'email'")
    assert status == [("sent", None)]
    raw, message = received(smtp)
    assert len(raw) > 1000
    assert smtp.messages[0].rcpt_tos == recipients
    assert title in body_text(message)


# ---------------------------------------------------------------------- item 8: operator hints
@pytest.fixture
def plain_smtp() -> Iterator[SmtpServer]:
    """An SMTP server without TLS at all (no STARTTLS offered)."""
    from aiosmtpd.controller import Controller

    server = SmtpServer("127.0.0.1", 0)

    class Handler:
        async def handle_DATA(self, srv, session, envelope):
            server.messages.append(envelope)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    server.port = controller.port
    yield server
    controller.stop()


def test_a_server_that_requires_starttls_says_to_set_use_tls_and_the_alert_waits(
    gh_tracker, github, smtp
):
    tracker = gh_tracker(
        {
            "notify": {
                "email": {
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                    "from_addr": "mrt@tracker.example",
                    "to_list": ["oncall@example.com"],
                    "use_tls": False,
                }
            }
        }
    )
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "DeepSeek-R2 eval results")

    tracker.once()

    [(status, error)] = tracker.sql(
        "SELECT status, last_error FROM delivery WHERE channel = 'email'"
    )
    # An operator fix, like a wrong password: retried, so the alert goes out once fixed.
    assert status == "retrying"
    assert error.startswith("SMTP mail refused: 530")
    assert "set notify.email.use_tls = true" in error


def test_login_before_starttls_says_to_set_use_tls(smtp):
    result = channel(smtp, use_tls=False).send(Outgoing(1, 1, alert()))

    assert not result.ok and not result.permanent
    assert "set notify.email.use_tls = true" in result.error
    assert PASSWORD not in result.error


def test_a_wrong_password_names_the_variables_to_check_and_never_the_password(smtp):
    env = {"SMTP_USER": "mrt-bot", "SMTP_PASS": "bad-password-xyz"}

    result = channel(smtp, env=env).send(Outgoing(1, 1, alert()))

    assert not result.ok and not result.permanent
    assert result.error.startswith("SMTP login refused: 535")
    assert "check the values of SMTP_USER and SMTP_PASS" in result.error
    assert "bad-password-xyz" not in f"{result.error} {result.reply}"


def test_starttls_not_offered_says_what_to_change(plain_smtp):
    result = channel(plain_smtp, login=False).send(Outgoing(1, 1, alert()))

    assert not result.ok and not result.permanent
    assert "the server does not offer STARTTLS" in result.error
    assert "notify.email.use_ssl = true" in result.error
    assert plain_smtp.messages == []  # nothing sent in clear when TLS was asked for


def test_plain_smtp_on_an_implicit_tls_port_says_to_set_use_ssl(smtps):
    result = channel(smtps, use_ssl=False, timeout_seconds=1).send(Outgoing(1, 1, alert()))

    assert not result.ok
    assert "set notify.email.use_ssl = true" in result.error


def test_implicit_tls_on_a_plain_port_says_to_unset_use_ssl(smtp):
    result = channel(smtp, use_ssl=True).send(Outgoing(1, 1, alert()))

    assert not result.ok
    assert "set notify.email.use_ssl = false" in result.error


def test_an_untrusted_server_certificate_says_to_set_ca_file(smtp):
    result = channel(smtp, ca_file=None).send(Outgoing(1, 1, alert()))

    assert not result.ok
    assert "notify.email.ca_file" in result.error


def test_nothing_listening_says_to_check_host_and_port():
    nobody = SmtpServer("127.0.0.1", free_port())

    result = channel(nobody, login=False).send(Outgoing(1, 1, alert()))

    assert not result.ok
    assert "check notify.email.smtp_host and smtp_port" in result.error


# ---------------------------------------------------------------------- addresses
@pytest.mark.parametrize(
    ("field", "address", "says"),
    [
        ("to_list", "ops@" + "b" * 300 + ".example", "longer than 254"),
        ("to_list", "张三@例子.cn", "SMTPUTF8"),
        ("from_addr", "mrt@tracker.example\r\nBcc: victim@evil.example", "not an e-mail address"),
        ("from_addr", "mrt-at-tracker", "not an e-mail address"),
    ],
    ids=["too-long", "non-ascii", "line-break-in-from", "no-at-in-from"],
)
def test_an_address_that_cannot_go_on_the_wire_is_a_config_error(field, address, says):
    values = {"smtp_host": "127.0.0.1", "to_list": ["oncall@example.com"]}
    values[field] = [address] if field == "to_list" else address

    with pytest.raises(ValidationError) as error:
        EmailSettings(**values)

    assert says in str(error.value)


def test_a_non_ascii_display_name_is_an_encoded_word_and_not_in_the_envelope(smtp):
    to = ["张三 <zhangsan@example.com>", "oncall@example.com"]

    assert channel(smtp, to_list=to).send(Outgoing(1, 1, alert())).ok

    raw, message = received(smtp)
    assert raw.isascii()
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
        ("张三", "zhangsan@example.com"),
        ("", "oncall@example.com"),
    ]
    assert smtp.messages[0].rcpt_tos == ["zhangsan@example.com", "oncall@example.com"]


@pytest.mark.parametrize(
    "sender", ["MRT Bot <mrt@tracker.example>", "模型追踪 <mrt@tracker.example>"]
)
def test_message_ids_and_thread_headers_are_rfc_5322_msg_ids_with_a_display_name_sender(sender):
    """RFC 5322 §3.6.4: ``msg-id = "<" id-left "@" id-right ">"``, dot-atom text on both
    sides. A ``from_addr`` with a display name gave ``@tracker.example>>``: no client could
    thread on it."""
    import re
    from datetime import timedelta

    from mrt_engine.notify.incident_line import IncidentNote

    settings = EmailSettings(
        smtp_host="127.0.0.1", smtp_port=25, from_addr=sender, to_list=["oncall@example.com"]
    )
    built = build(settings, ChannelContext(SecretResolver({}), request_timeout=5))
    atext = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    msg_id = re.compile(rf"<{atext}(?:\.{atext})*@{atext}(?:\.{atext})*>")
    for position in (1, 2):
        note = IncidentNote(
            incident_id=7,
            name="DeepSeek-V3.2",
            position=position,
            source_position=position,
            new_source=True,
            first_source="huggingface:deepseek-ai:models",
            first_seen_at=T0,
            seen_at=T0 + timedelta(hours=2),
            thread_token="0123456789abcdef",
        )
        msg = built.message(Outgoing(41 + position, 1, alert(incident=note)))
        for header in ("Message-ID", "In-Reply-To", "References"):
            if msg[header] is not None:
                assert msg_id.fullmatch(str(msg[header])), (header, msg[header])
        assert str(msg["Message-ID"]).endswith("@tracker.example>")


# ---------------------------------------------------------------------- a whole send's deadline
class _TricklingSmtp:
    """An SMTP server on 127.0.0.1 that greets, then answers every command a byte at a time
    (``interval`` apart): no single read waits for the timeout, the send never ends."""

    def __init__(self, interval: float = 0.2, greet_slowly: bool = False) -> None:
        import socket
        import threading

        self.interval, self.greet_slowly = interval, greet_slowly
        self.server = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self.server.getsockname()[1]
        self.ca_file = None
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _trickle(self, conn, data: bytes) -> None:
        for byte in data:
            if self.stop.wait(self.interval):
                return
            conn.sendall(bytes([byte]))

    def _serve(self) -> None:
        import threading

        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn) -> None:
        try:
            greeting = b"220 trickle.example ESMTP " + b"." * 500 + b"\r\n"
            if self.greet_slowly:
                self._trickle(conn, greeting)
            else:
                conn.sendall(b"220 trickle.example ESMTP\r\n")
            reader = conn.makefile("rb")
            while not self.stop.is_set() and reader.readline():
                self._trickle(conn, b"250-trickle.example " + b"." * 500 + b"\r\n250 OK\r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@pytest.mark.parametrize("greet_slowly", [False, True], ids=["commands", "greeting"])
def test_a_server_that_answers_a_byte_at_a_time_cannot_hold_a_send_past_its_deadline(
    greet_slowly,
):
    import threading
    import time

    server = _TricklingSmtp(greet_slowly=greet_slowly)
    try:
        mail = channel(server, login=False, use_tls=False, timeout_seconds=1)
        results: list = []
        thread = threading.Thread(
            target=lambda: results.append(mail.send(Outgoing(1, 1, alert()))), daemon=True
        )
        started = time.monotonic()
        thread.start()
        thread.join(30)  # (not a timing limit: the suite must not hang on the defect)
        assert not thread.is_alive(), "the send is still held by the trickling server"
        [result] = results
        assert not result.ok
        assert "within 3s" in result.error and "notify.email.timeout_seconds" in result.error
        assert mail.send_seconds() == 3.0
        assert time.monotonic() - started < 30
    finally:
        server.close()
