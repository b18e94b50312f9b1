"""Shared pytest options and fixtures."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite the checked-in files under generated/ instead of comparing with them",
    )


@pytest.fixture(scope="session", autouse=True)
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Modules built without an explicit folder go to a cache of this test run (and so do
    those of the CLI commands the tests start), never to the user's own cache."""
    folder = str(tmp_path_factory.mktemp("corrgen-cache"))
    previous = os.environ.get("CORRGEN_CACHE")
    os.environ["CORRGEN_CACHE"] = folder
    yield folder
    if previous is None:
        os.environ.pop("CORRGEN_CACHE", None)
    else:
        os.environ["CORRGEN_CACHE"] = previous


@pytest.fixture(scope="session", autouse=True)
def no_tuning_by_default() -> str:
    """Modules are not tuned unless a test asks (tests/test_tune.py): a tuned build compiles
    every candidate and times it, and which candidate wins depends on the machine's load,
    while every test of the kernels' numbers holds for either."""
    previous = os.environ.get("CORRGEN_TUNE")
    os.environ["CORRGEN_TUNE"] = "0"
    yield "0"
    if previous is None:
        os.environ.pop("CORRGEN_TUNE", None)
    else:
        os.environ["CORRGEN_TUNE"] = previous


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite the golden files (--update-golden)."""
    return bool(request.config.getoption("--update-golden"))
