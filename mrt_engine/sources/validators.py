"""Config value types shared by source settings: API base URLs, organisation names."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

_ORG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _api_base(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError(
            "url", "expected an http(s) URL, got {value}", {"value": f'"{value}"'}
        )
    return value.rstrip("/")


def _org(value: str) -> str:
    if not _ORG.match(value):
        raise PydanticCustomError(
            "org_format",
            "expected an organisation or user name like deepseek-ai, got {value}",
            {"value": f'"{value}"'},
        )
    return value


ApiBase = Annotated[str, AfterValidator(_api_base)]
OrgName = Annotated[str, AfterValidator(_org)]
