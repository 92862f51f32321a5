"""Packaging: every dependency's lower bound is the one .ci/run tests, and the metadata is the
form current build backends accept without a deprecation."""

from __future__ import annotations

import os
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOWER_BOUNDS = ROOT / ".ci" / "lower-bounds.txt"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirements() -> list[Requirement]:
    """The runtime dependencies and every optional group's (the test extra)."""
    project = pyproject()["project"]
    texts = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        texts.extend(group)
    return [Requirement(text) for text in texts]


def lower_bound_pins() -> dict[str, Version]:
    pins = {}
    for line in LOWER_BOUNDS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_dependency_has_a_lower_bound_and_the_lower_bounds_run_pins_exactly_it():
    pins = lower_bound_pins()
    bounds = {}
    for req in requirements():
        minimums = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert len(minimums) == 1, f"{req}: give it one lower bound (>=) that the tests pass on"
        bounds[canonicalize_name(req.name)] = minimums[0]
    assert pins == bounds, "pyproject.toml and .ci/lower-bounds.txt disagree"


@pytest.mark.skipif(
    not os.environ.get("MRT_LOWER_BOUNDS"), reason="only in .ci/run's lower-bounds run"
)
def test_the_lower_bounds_run_really_runs_on_the_lower_bounds():
    installed = {name: Version(metadata.version(name)) for name in lower_bound_pins()}
    assert installed == lower_bound_pins()


def test_the_license_is_an_spdx_expression_and_the_build_backend_reads_it():
    data = pyproject()
    assert data["project"]["license"] == "Apache-2.0"  # not the deprecated {text = ...} table
    # a classifier would repeat the license, and setuptools refuses both together
    assert not [c for c in data["project"].get("classifiers", []) if c.startswith("License ::")]
    [setuptools] = [
        Requirement(r) for r in data["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert Version("77") in setuptools.specifier  # the first to read license expressions
    assert not setuptools.specifier.contains("76.9")
