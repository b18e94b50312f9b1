"""codegen.memo: values remembered across processes by their files' sizes and times."""

from __future__ import annotations

import os
import stat

import pytest

from codegen import build, memo


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CORRGEN_CACHE", str(folder))
    return folder


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_a_value_is_computed_once_while_its_files_stay_the_same(cache, tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("one")
    compute, calls = counting("first")
    assert memo.remembered("m", [source], compute) == "first"
    assert memo.remembered("m", [source], compute) == "first"
    assert len(calls) == 1
    assert (cache / memo.MEMO_FOLDER / "m.json").is_file()


@pytest.mark.parametrize("change", ["size", "time", "removed"])
def test_a_changed_file_computes_the_value_again(cache, tmp_path, change):
    source = tmp_path / "source.txt"
    source.write_text("one")
    memo.remembered("m", [source], lambda: "old")
    if change == "size":
        source.write_text("longer")
    elif change == "time":
        before = source.stat().st_mtime_ns
        os.utime(source, ns=(before + 1, before + 1))
    else:
        source.unlink()
    assert memo.remembered("m", [source], lambda: "new") == "new"
    assert memo.remembered("m", [source], lambda: "newer") == "new"


@pytest.mark.parametrize("content", ["", "{", "[]", '{"signature": 1}',
                                     '{"signature": "x", "value": 3}'])
def test_a_malformed_memo_is_computed_again_and_replaced(cache, tmp_path, content):
    source = tmp_path / "source.txt"
    source.write_text("one")
    path = cache / memo.MEMO_FOLDER / "m.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert memo.remembered("m", [source], lambda: "value") == "value"
    compute, calls = counting("other")
    assert memo.remembered("m", [source], compute) == "value" and not calls


def test_an_unwritable_cache_still_gives_the_value(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("CORRGEN_CACHE", str(blocker / "cache"))
    compute, calls = counting("value")
    assert memo.remembered("m", [blocker], compute) == "value"
    assert memo.remembered("m", [blocker], compute) == "value"
    assert len(calls) == 2


def test_a_compilers_new_version_is_seen(cache, tmp_path):
    """The compiler's --version is remembered by its file: a new compiler at the same path
    (here a script, rewritten with another size) gives its new version line."""
    compiler = tmp_path / "cc"

    def install(version: str) -> None:
        compiler.write_text(f"#!/bin/sh\necho 'fake cc {version}'\n")
        compiler.chmod(compiler.stat().st_mode | stat.S_IXUSR)

    install("1.0")
    assert build._version_output((str(compiler),)).strip() == "fake cc 1.0"
    install("10.0")
    assert build._version_output((str(compiler),)).strip() == "fake cc 10.0"


def test_the_generator_fingerprint_is_the_files_digest_whether_remembered_or_not(cache):
    """The memo gives what the files give: computed with no memo, and read from one."""
    build.generator_fingerprint.cache_clear()
    try:
        computed = build.generator_fingerprint()
        build.generator_fingerprint.cache_clear()
        assert any((cache / memo.MEMO_FOLDER).glob("generator-*.json"))
        assert build.generator_fingerprint() == computed
    finally:
        build.generator_fingerprint.cache_clear()
