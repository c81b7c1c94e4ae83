"""A fixed corpus of hostile inputs, replayed against a real ``alertbridge serve``.

The corpus and its replayer live in tests/corpus_replay.py. The property
tests in tests/test_fuzz_endpoints.py explore at random; this
corpus pins the cases worth never losing (a regression shows up by name):
malformed and truncated JSON, 100k-deep nesting, huge strings, wrong types,
invalid UTF-8, byte order marks, NaN/Infinity/1e999, integers beyond Python's
digit limit, duplicate keys, XXE and entity bombs for the WeCom callback, and
forged or hostile callback query strings.

tests/data/fuzz_corpus/manifest.json lists each case: its file (or a
``generate`` spec for the big ones, so no large file is committed), where it
is sent, its Content-Type and the status expected. Every answer must be that
status (never a 5xx), rejections must carry a one-line reason, and a rejected
request must store nothing (no delivery, no callback dedup key).

The server runs with webhook auth and a callback-enabled app, as production
does; tests/test_secrets_in_logs.py replays the same corpus and greps the logs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.corpus_replay import (
    CORPUS,
    MANIFEST,
    MAX_FILE_BYTES,
    CorpusEntry,
    Replayer,
    corpus_config,
    corpus_env,
    load_corpus,
)
from tests.harness import AlertbridgeProcess

CASES = [
    pytest.param(entry, target, id=f"{entry.name}@{target}")
    for entry in load_corpus()
    for target in entry.targets
]


@pytest.fixture(scope="module")
def replayer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayer]:
    # The app's API base is a closed port: callback replies fail quietly (and are logged).
    workdir = tmp_path_factory.mktemp("corpus")
    bridge = AlertbridgeProcess(workdir, corpus_config("http://127.0.0.1:9"), env=corpus_env()).start()
    replayer = Replayer(bridge.base_url, bridge.db_path, bridge.stderr)
    try:
        yield replayer
    finally:
        replayer.close()
        bridge.stop()


def test_corpus_files_are_small_and_all_listed() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != MANIFEST.name}
    listed = {entry.name for entry in load_corpus() if (CORPUS / entry.name).exists()}
    assert files == listed
    assert 30 <= len(files) <= 80
    for path in CORPUS.iterdir():
        assert path.stat().st_size <= MAX_FILE_BYTES, path.name


@pytest.mark.parametrize(("entry", "target"), CASES)
def test_corpus_entry(replayer: Replayer, entry: CorpusEntry, target: str) -> None:
    replayer.replay(entry, target)
