"""E-mail over SMTP: STARTTLS (``use_tls``, v0's default) or implicit TLS (``use_ssl``).

The Subject is built only from trusted words and config names; the untrusted title and body go in
the plain-text body. The Message-ID is derived from the delivery id, so every retry of one
delivery carries the same id and mail clients can fold duplicates of an at-least-once send.
The messages of one incident (a model family across sources, mrt_engine/incidents.py) share a
thread: its first e-mail carries the incident's Message-ID, and later ones reply to it.

On the wire the message is RFC 5322 as RFC 5321 wants it: CRLF line ends, folded headers
(non-ASCII as encoded words) and a quoted-printable body, so every line is far below the 998-octet
limit and the message is 7-bit clean for any server. A failure an operator can fix in
``notify.email`` (STARTTLS, TLS mode, login, CA, host and port) says what to change.
"""

from __future__ import annotations

import contextlib
import email.policy
import os
import re
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from email.utils import parseaddr as parse_address

from pydantic import Field, field_validator

from mrt_engine.config import Wait
from mrt_engine.notify.base import (
    Channel,
    ChannelContext,
    ChannelKind,
    ChannelSettings,
    Outgoing,
    SendResult,
)
from mrt_engine.notify.incident_line import thread_id
from mrt_engine.notify.message import render
from mrt_engine.secrets import Secret, redact, shorten
from mrt_engine.wording import plural

# An e-mail has no length limit a message comes near (lines are folded, the body is QP-encoded).
MAX_TEXT = None
MAX_BYTES = None
# Replies that ask for another connection mode or login (530 "Must issue a STARTTLS command
# first" / "Authentication required", 534/535 login refused, 538 encryption required): fixing the
# config lets the same message through, so, like a failed login, they are retried, not dead.
OPERATOR_CODES = {530, 534, 535, 538}
# What OpenSSL says when the other end answers a ClientHello in plain text (a plain SMTP greeting).
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}


class EmailSettings(ChannelSettings):
    """``notify.email``."""

    smtp_host: str
    smtp_port: int = Field(587, ge=1, le=65535)
    user_env: str | None = None
    password_env: str | None = None
    to_list: list[str] = Field(min_length=1)
    from_addr: str | None = None
    use_tls: bool = True  # STARTTLS
    use_ssl: bool | None = None  # implicit TLS; default: true on port 465
    ca_file: str | None = None
    timeout_seconds: Wait | None = Field(None, gt=0, le=300)

    @field_validator("to_list")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            _check_address(address)
        return value

    @field_validator("from_addr")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None:
            _check_address(value)
        return value


def _check_address(address: str) -> None:
    """Raise ``ValueError`` unless ``address`` can go in an envelope and a header as it is."""
    _, parsed = parse_address(address)
    if "@" not in parsed or any(c in address for c in "\r\n"):
        raise ValueError(f"not an e-mail address: {address!r}")
    if not parsed.isascii():
        # smtplib speaks ASCII commands; a display name may be anything (it is encoded).
        raise ValueError(
            f"{address!r}: a non-ASCII address needs SMTPUTF8, which MRT does not use"
            " (an internationalised domain can be written in its xn-- form)"
        )
    if len(parsed) > 254:  # RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its <>
        raise ValueError(f"{address!r}: longer than 254 characters (RFC 5321)")


# RFC 5322 §3.6.4: a msg-id's right side is a dot-atom ("example.com"), nothing else.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _id_domain(sender: str) -> str:
    """The right side of the Message-IDs MRT makes: the sender's domain (its address's, not
    the ``Name <addr>`` it may be written as), or ``localhost`` when that is no dot-atom."""
    domain = parse_address(sender)[1].rsplit("@", 1)[-1]
    return domain if _DOT_ATOM.fullmatch(domain) else "localhost"


# A whole send (connect, greeting, TLS, login, envelope, data) takes at most this many step
# timeouts: smtplib's timeout bounds each socket operation only, and a server that answers a
# byte at a time never lets one of them time out.
SEND_STEPS = 3


class _SendDeadline:
    """A watchdog over one SMTP conversation: when it has taken ``seconds``, its connection is
    shut down (both ways), so the read that waits returns at once and the send fails."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passed = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None  # a duplicate of the connection's descriptor
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _SendDeadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def watch(self, sock: socket.socket) -> None:
        """Watch the connection ``sock`` is (a duplicate of its descriptor: shutting that down
        shuts the connection, also after STARTTLS wraps ``sock`` into a TLS socket)."""
        with self._lock:
            self._socket = socket.socket(fileno=os.dup(sock.fileno()))
            if self.passed:
                _shut(self._socket)

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            if self._socket is not None:
                _shut(self._socket)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already by the other side
        sock.shutdown(socket.SHUT_RDWR)


def _watched(base: type[smtplib.SMTP], deadline: _SendDeadline) -> type[smtplib.SMTP]:
    """``base`` whose connection ``deadline`` watches from the moment it is made (the greeting
    is read inside the constructor)."""

    class Watched(base):  # type: ignore[valid-type,misc]
        def _get_socket(self, host, port, timeout):  # smtplib's hook
            sock = super()._get_socket(host, port, timeout)
            deadline.watch(sock)
            return sock

    return Watched


class EmailChannel(Channel):
    name = "email"

    def __init__(
        self,
        settings: EmailSettings,
        user: Secret | None,
        password: Secret | None,
        timeout: float,
    ) -> None:
        self.settings = settings
        self.user = user
        self.password = password
        self.timeout = settings.timeout_seconds or timeout
        self.use_ssl = (
            settings.use_ssl if settings.use_ssl is not None else settings.smtp_port == 465
        )
        self.sender = settings.from_addr or (
            user.reveal() if user and "@" in user.reveal() else f"mrt@{socket.getfqdn()}"
        )

    def describe(self) -> str:
        mode = "SSL" if self.use_ssl else ("STARTTLS" if self.settings.use_tls else "plain")
        return (
            f"SMTP {self.settings.smtp_host}:{self.settings.smtp_port} ({mode}) "
            f"to {plural(len(self.settings.to_list), 'recipient')}"
        )

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def message(self, outgoing: Outgoing) -> EmailMessage:
        context = outgoing.context
        msg = EmailMessage(policy=email.policy.SMTP)  # CRLF line ends, headers folded at 78
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.settings.to_list)
        msg["Subject"] = context.subject(self.settings.locale)
        msg["Date"] = formatdate(usegmt=True)
        domain = _id_domain(self.sender)
        msg["Message-ID"] = (
            f"<mrt.delivery.{outgoing.delivery_id}.{context.fingerprint[:16]}@{domain}>"
        )
        self._thread(msg, context, domain)
        msg["X-MRT-Fingerprint"] = context.fingerprint
        # Quoted-printable: alerts are mostly ASCII (readable in the source) and no line of it is
        # longer than 78 octets, whatever the title or the excerpt holds.
        text = render(context, MAX_TEXT, self.settings) + "\n"
        msg.set_content(text, cte="quoted-printable")
        return msg

    @staticmethod
    def _thread(msg: EmailMessage, context, domain: str) -> None:
        """Put a message of an incident into the incident's thread (RFC 5322 §3.6.4): the
        first event's e-mail has the incident's Message-ID, every later one replies to it
        (``In-Reply-To`` and ``References`` name that parent, which has no ``References``).
        A bundle of one incident's alike alerts (a cluster) joins it too; other bundles carry
        several incidents' alerts and stay on their own (``thread_incident``)."""
        note = context.thread_incident
        if note is None:
            return
        root = thread_id(note, domain)
        if note.first:
            msg.replace_header("Message-ID", root)
        else:
            msg["In-Reply-To"] = root
            msg["References"] = root

    def preview(self, outgoing: Outgoing) -> str:
        """The e-mail :meth:`send` would submit, as text: the envelope, the headers (decoded)
        and the body (not quoted-printable), secrets redacted."""
        msg = self.message(outgoing)
        s = self.settings
        lines = [
            f"SMTP {s.smtp_host}:{s.smtp_port} MAIL FROM:<{parse_address(self.sender)[1]}>"
            f" RCPT TO:{', '.join(f'<{parse_address(a)[1]}>' for a in s.to_list)}",
            "",
            *(f"{name}: {value}" for name, value in msg.items()),
            "",
            msg.get_content().rstrip("\n"),
        ]
        return redact("\n".join(lines))

    def send_seconds(self) -> float:
        return SEND_STEPS * self.timeout

    def _connect(self, progress: _Progress, deadline: _SendDeadline) -> smtplib.SMTP:
        """A connection greeted, encrypted and logged in as configured (``progress`` says how
        far it got when it fails), watched by ``deadline``; closed again when that fails."""
        host, port = self.settings.smtp_host, self.settings.smtp_port
        if self.use_ssl:
            smtp: smtplib.SMTP = _watched(smtplib.SMTP_SSL, deadline)(
                host, port, timeout=self.timeout, context=self._tls()
            )
        else:
            smtp = _watched(smtplib.SMTP, deadline)(host, port, timeout=self.timeout)
        try:
            progress.stage = "ehlo"
            smtp.ehlo()
            progress.starttls_offered = smtp.has_extn("starttls")
            if self.settings.use_tls and not self.use_ssl:
                progress.stage = "starttls"
                smtp.starttls(context=self._tls())
                progress.tls = True
                smtp.ehlo()
            if self.user is not None and self.password is not None:
                progress.stage = "login"
                smtp.login(self.user.reveal(), self.password.reveal())
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, outgoing: Outgoing) -> SendResult:
        msg = self.message(outgoing)
        progress = _Progress(tls=self.use_ssl)
        with _SendDeadline(self.send_seconds()) as deadline:
            result = self._converse(msg, progress, deadline)
        return self._late(progress, deadline) if deadline.passed and not result.ok else result

    def _late(self, progress: _Progress, deadline: _SendDeadline) -> SendResult:
        """A conversation the deadline cut short: retried (the server may be slow for now)."""
        key = (
            "notify.email.timeout_seconds"
            if self.settings.timeout_seconds
            else "delivery.request_timeout_seconds"
        )
        return SendResult(
            ok=False,
            error=f"SMTP {progress.stage} failed: no complete answer from the server within"
            f" {deadline.seconds:g}s ({SEND_STEPS} × {key}: a whole send's deadline)",
        )

    def _converse(
        self, msg: EmailMessage, progress: _Progress, deadline: _SendDeadline
    ) -> SendResult:
        try:
            with self._connect(progress, deadline) as smtp:
                progress.stage = "mail"
                code, reply = smtp.mail(self.sender)
                if code != 250:
                    return self._refused(progress, code, reply)
                progress.stage = "rcpt"
                accepted, refused = [], []
                for rcpt in self.settings.to_list:
                    code, reply = smtp.rcpt(rcpt)
                    (accepted if code in (250, 251) else refused).append((rcpt, code, reply))
                deferred = [r for r in refused if 400 <= r[1] < 500]
                if deferred:
                    # Sending now would reach only some: send to nobody, retry for everyone.
                    smtp.rset()
                    rcpt, code, reply = deferred[0]
                    return self._refused(progress, code, reply)
                if not accepted:
                    _, code, reply = refused[0]
                    return self._refused(progress, code, reply)
                progress.stage = "data"
                # as_bytes() with the SMTP policy: CRLF throughout, which smtplib sends as is.
                code, reply = smtp.data(msg.as_bytes())
                text = _reply(code, reply)
                if code != 250:
                    return self._refused(progress, code, reply)
                if refused:
                    text += "; refused: " + ", ".join(f"{r} ({c})" for r, c, _ in refused)
                return SendResult(ok=True, reply=redact(text))
        except smtplib.SMTPResponseException as exc:
            return self._refused(progress, exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            return self._failed(progress, exc)

    def _failed(self, progress: _Progress, exc: BaseException) -> SendResult:
        return SendResult(
            ok=False,
            error=redact(f"SMTP {progress.stage} failed: {type(exc).__name__}: {exc}")
            + self._hint(progress, exc),
        )

    def probe(self, timeout: float) -> SendResult:
        """Connect, greet, encrypt and log in as :meth:`send` does, then quit: the server and
        the login work, and no message is sent."""
        progress = _Progress(tls=self.use_ssl)
        with _SendDeadline(SEND_STEPS * self.timeout) as deadline:
            result = self._greet(progress, deadline)
        return self._late(progress, deadline) if deadline.passed and not result.ok else result

    def _greet(self, progress: _Progress, deadline: _SendDeadline) -> SendResult:
        try:
            with self._connect(progress, deadline):
                done = ["greeted"]
                if progress.tls:
                    done.append("TLS")
                if progress.stage == "login":
                    done.append("logged in")
                return SendResult(ok=True, reply=", ".join(done))
        except smtplib.SMTPResponseException as exc:
            return self._refused(progress, exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            return self._failed(progress, exc)

    def _refused(self, progress: _Progress, code: int, reply: bytes | str) -> SendResult:
        stage = progress.stage
        text = _reply(code, reply)
        # 5xx on the envelope or the data is final for this message; a login or a connection
        # mode (OPERATOR_CODES, or a failure before MAIL) is an operator fix, so it is retried.
        permanent = (
            500 <= code < 600 and stage in ("mail", "rcpt", "data") and code not in OPERATOR_CODES
        )
        return SendResult(
            ok=False,
            reply=redact(text),
            error=f"SMTP {stage} refused: {redact(text)}" + self._hint(progress, code),
            permanent=permanent,
        )

    def _hint(self, progress: _Progress, failure: int | BaseException) -> str:
        """`` — what to change in notify.email`` for a failure we recognise as a setup mistake.

        Only config key and variable names go in: never a value read from the environment.
        """
        hint = self._setup_mistake(progress, failure)
        return f" — {hint}" if hint else ""

    def _setup_mistake(self, progress: _Progress, failure: int | BaseException) -> str | None:
        s = self.settings
        stage = progress.stage
        code = failure if isinstance(failure, int) else getattr(failure, "smtp_code", None)
        unsupported = isinstance(failure, smtplib.SMTPNotSupportedError)
        # 530 (or AUTH not offered) in clear from a server that offers STARTTLS.
        in_clear = not progress.tls and progress.starttls_offered
        if in_clear and (code in (530, 538) or (unsupported and stage == "login")):
            return "the server requires STARTTLS: set notify.email.use_tls = true"
        if code == 530 and self.user is None:
            return "the server requires a login: set notify.email.user_env and password_env"
        if stage == "login" and code in (534, 535):
            return (
                f"the server refused the login: check the values of {s.user_env} and"
                f" {s.password_env} (notify.email.user_env, password_env)"
            )
        if stage == "login" and unsupported:
            return (
                "the server offers no login on this port: remove notify.email.user_env and"
                " password_env, or use its submission port"
            )
        if stage == "starttls" and unsupported:
            return (
                f"the server does not offer STARTTLS: if port {s.smtp_port} expects TLS from the"
                " start (usually 465), set notify.email.use_ssl = true"
            )
        if isinstance(failure, ssl.SSLCertVerificationError):
            return (
                "the server's certificate did not verify: set notify.email.ca_file to the CA"
                " that signed it (and smtp_host to a name the certificate holds)"
            )
        if stage != "connect":
            return None
        if isinstance(failure, ssl.SSLError) and failure.reason in _NOT_TLS_REASONS:
            return (
                f"port {s.smtp_port} answers without TLS: set notify.email.use_ssl = false"
                " (and use_tls = true for STARTTLS)"
            )
        if not self.use_ssl and isinstance(failure, smtplib.SMTPServerDisconnected):
            # Connected, but no greeting: an implicit-TLS port waits for our ClientHello.
            return (
                f"no SMTP greeting on port {s.smtp_port}: if it expects TLS from the start"
                " (usually 465), set notify.email.use_ssl = true"
            )
        if isinstance(failure, ConnectionRefusedError):
            return (
                f"nothing accepts connections at {s.smtp_host}:{s.smtp_port}:"
                " check notify.email.smtp_host and smtp_port"
            )
        return None


@dataclass
class _Progress:
    """How far one send got: a failure is reported against its stage and connection state."""

    stage: str = "connect"
    tls: bool = False  # the connection is encrypted (implicit TLS, or after STARTTLS)
    starttls_offered: bool = False


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return shorten(f"{code} {text}", 300)


def build(settings: EmailSettings, ctx: ChannelContext) -> Channel | None:
    user = ctx.secrets.get(
        settings.user_env,
        where="notify.email.user_env",
        what="SMTP login user",
        required=bool(settings.user_env),
    )
    password = ctx.secrets.get(
        settings.password_env,
        where="notify.email.password_env",
        what="SMTP login password",
        required=bool(settings.password_env),
    )
    if (settings.user_env and user is None) or (settings.password_env and password is None):
        return None
    return EmailChannel(settings, user, password, ctx.request_timeout)


KIND = ChannelKind(name="email", settings=EmailSettings, build=build)
