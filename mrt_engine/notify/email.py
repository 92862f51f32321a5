"""E-mail over SMTP: STARTTLS (``use_tls``, v0's default) or implicit TLS (``use_ssl``).

The Subject is built only from trusted words and config names; the untrusted title and body go in
the plain-text body. The Message-ID is derived from the delivery id, so every retry of one
delivery carries the same id and mail clients can fold duplicates of an at-least-once send.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from email.utils import parseaddr as parse_address

from pydantic import Field, field_validator

from mrt_engine.config import StrictModel
from mrt_engine.notify.base import Channel, ChannelContext, ChannelKind, Outgoing, SendResult
from mrt_engine.notify.message import TemplateError, compile_template, render
from mrt_engine.secrets import Secret, redact
from mrt_engine.wording import plural


class EmailSettings(StrictModel):
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
    template: str | None = None
    timeout_seconds: float | None = Field(None, gt=0, le=300)

    @field_validator("to_list")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            _, parsed = parse_address(address)
            if "@" not in parsed or any(c in address for c in "\r\n"):
                raise ValueError(f"not an e-mail address: {address!r}")
        return value

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_template(value)
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return value


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
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.settings.to_list)
        msg["Subject"] = context.subject()
        msg["Date"] = formatdate(usegmt=True)
        domain = self.sender.rsplit("@", 1)[-1] or "localhost"
        msg["Message-ID"] = (
            f"<mrt.delivery.{outgoing.delivery_id}.{context.fingerprint[:16]}@{domain}>"
        )
        msg["X-MRT-Fingerprint"] = context.fingerprint
        msg.set_content(render(context, None, self.settings.template) + "\n")
        return msg

    def send(self, outgoing: Outgoing) -> SendResult:
        msg = self.message(outgoing)
        host, port = self.settings.smtp_host, self.settings.smtp_port
        stage = "connect"
        try:
            if self.use_ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, port, timeout=self.timeout, context=self._tls()
                )
            else:
                smtp = smtplib.SMTP(host, port, timeout=self.timeout)
            with smtp:
                stage = "ehlo"
                smtp.ehlo()
                if self.settings.use_tls and not self.use_ssl:
                    stage = "starttls"
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if self.user is not None and self.password is not None:
                    stage = "login"
                    smtp.login(self.user.reveal(), self.password.reveal())
                stage = "mail"
                code, reply = smtp.mail(self.sender)
                if code != 250:
                    return self._refused(stage, code, reply)
                accepted, refused = [], []
                for rcpt in self.settings.to_list:
                    code, reply = smtp.rcpt(rcpt)
                    (accepted if code in (250, 251) else refused).append((rcpt, code, reply))
                deferred = [r for r in refused if 400 <= r[1] < 500]
                if deferred:
                    # Sending now would reach only some: send to nobody, retry for everyone.
                    smtp.rset()
                    rcpt, code, reply = deferred[0]
                    return self._refused("rcpt", code, reply)
                if not accepted:
                    _, code, reply = refused[0]
                    return self._refused("rcpt", code, reply)
                stage = "data"
                code, reply = smtp.data(msg.as_bytes())
                text = _reply(code, reply)
                if code != 250:
                    return self._refused(stage, code, reply)
                if refused:
                    text += "; refused: " + ", ".join(f"{r} ({c})" for r, c, _ in refused)
                return SendResult(ok=True, reply=redact(text))
        except smtplib.SMTPResponseException as exc:
            return self._refused(stage, exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            return SendResult(
                ok=False, error=redact(f"SMTP {stage} failed: {type(exc).__name__}: {exc}")
            )

    @staticmethod
    def _refused(stage: str, code: int, reply: bytes | str) -> SendResult:
        text = _reply(code, reply)
        # 5xx on the envelope or the data is final for this message; auth is an operator fix.
        permanent = 500 <= code < 600 and stage in ("mail", "rcpt", "data")
        return SendResult(
            ok=False,
            reply=redact(text),
            error=f"SMTP {stage} refused: {redact(text)}",
            permanent=permanent,
        )


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}"[:300]


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
