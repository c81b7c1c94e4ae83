"""The fixtures the test modules share, in one place:

- the fake WeCom over real HTTP: ``wecom_slot`` (one uvicorn per module that
  each test plugs its own fake into, via ``wecom_url``), ``serve_wecom`` (a
  fake on its own server) and ``fake_wecom`` (the shared corp's fake);
- manual clocks: ``clock``, and ``rig_clock``/``rig_wecom`` for the dispatcher rig;
- the running app on a real uvicorn: ``serve_app``;
- SQLite: ``db_path``, ``outbox``, ``state`` (counting on ``metrics``);
- a throwaway PostgreSQL server per module: ``postgres``;
- the real Alertmanager: ``alertmanager`` (per module), ``start_alertmanager``;
- the loopback image server: ``image_server``, ``images``;
- the once-per-session WeCom fault run: ``fault_run``.

Code that is not a fixture lives in modules named for what it is:
tests/harness.py (real ``alertbridge serve`` and Alertmanager processes),
tests/delivery_wiring.py (the one place the delivery core is wired),
tests/dispatch_rig.py, tests/callback_bridge.py, tests/ingest_rig.py,
tests/config_builder.py, tests/wecom_identity.py, tests/image_server.py,
tests/fault_run.py, tests/fuzz_inputs.py, tests/corpus_replay.py,
tests/helm_cli.py, tests/sqlite_probes.py. A test module never imports
another test module: what two of them share is here or in one of those.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from alertbridge.app import create_app
from alertbridge.config import Config
from alertbridge.metrics import Metrics
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.testing.fake_wecom import FakeApp, FakeWeCom, ManualClock
from alertbridge.testing.postgres_server import PostgresServer, require_postgres
from alertbridge.testing.server import ServerThread, SwappableApp, serve_in_thread
from alertbridge.testing.store_contract import opened
from tests.dispatch_rig import RIG_START
from tests.fault_run import FaultRun, run_fault_suite
from tests.harness import AlertmanagerProcess
from tests.image_server import ImageServer, image_app
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET


@pytest.fixture(scope="module")
def wecom_slot() -> Iterator[tuple[SwappableApp, str]]:
    """One uvicorn server per module and its URL; each test plugs its own fake into it."""
    slot = SwappableApp()
    with serve_in_thread(slot) as url:
        yield slot, url


@pytest.fixture
def clock() -> ManualClock:
    """The manual clock a test's fake WeCom (and client) run on."""
    return ManualClock()


@pytest.fixture
def wecom_url(wecom_slot: tuple[SwappableApp, str], fake: FakeWeCom) -> Iterator[str]:
    """The module's server with this test's ``fake`` plugged in, for the test's length."""
    slot, url = wecom_slot
    slot.target = fake.app
    yield url
    slot.target = None


@pytest.fixture
def serve_wecom() -> Iterator[Callable[[FakeWeCom], str]]:
    """Serves a fake WeCom on its own loopback uvicorn until the test ends; its URL."""
    with ExitStack() as stack:

        def serve(fake: FakeWeCom) -> str:
            return stack.enter_context(fake.serve())

        yield serve


@pytest.fixture
def fake_wecom(serve_wecom: Callable[[FakeWeCom], str]) -> tuple[FakeWeCom, str]:
    """The fake WeCom of tests/wecom_identity.py (one app, one robot) on its own server, and its URL."""
    fake = FakeWeCom(
        apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)], robot_keys=[ROBOT_KEY]
    )
    return fake, serve_wecom(fake)


@pytest.fixture
def rig_clock() -> ManualClock:
    """The clock of tests/dispatch_rig.py: the dispatcher, client and fake share it."""
    return ManualClock(start=RIG_START)


@pytest.fixture
def rig_wecom(rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]) -> Iterator[FakeWeCom]:
    """The dispatcher rig's fake WeCom, on the rig's clock, plugged into the module's server."""
    fake = FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY], clock=rig_clock, wall_clock=rig_clock)
    wecom_slot[0].target = fake.app
    yield fake
    wecom_slot[0].target = None


@pytest.fixture(scope="module")
def image_server() -> Iterator[ImageServer]:
    """One loopback image server (tests/image_server.py) per module."""
    seen = ImageServer()
    with ServerThread(image_app(seen)) as thread:
        seen.base_url, seen.port = thread.base_url, thread.port
        yield seen


@pytest.fixture
def images(image_server: ImageServer) -> ImageServer:
    """The module's image server, with what earlier tests asked of it forgotten."""
    image_server.reset()
    return image_server


@pytest.fixture
def serve_app() -> Iterator[Callable[..., str]]:
    """Runs alertbridge's app on a real loopback uvicorn until the test ends; its base URL.

    ``serve_app(config, **options)`` passes ``options`` (``out``, ``store``,
    ``config_path`` …) to ``create_app``.
    """
    with ExitStack() as stack:

        def serve(config: Config, **options: Any) -> str:
            running = stack.enter_context(ServerThread(create_app(config, **options)))
            return running.base_url

        yield serve


@pytest.fixture(scope="session")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> FaultRun:
    """The one WeCom fault run of the session (tests/fault_run.py): its tests
    and the secrets grep read the same run instead of waiting for a second."""
    return run_fault_suite(tmp_path_factory.mktemp("faults"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The test's SQLite file, shared by its outbox and state stores as in production."""
    return tmp_path / "alertbridge.db"


@pytest.fixture
def metrics() -> Metrics:
    """A fresh registry: what a test's stores and app count, read as /metrics would."""
    return Metrics()


@pytest.fixture
async def outbox(db_path: Path, metrics: Metrics) -> AsyncIterator[SqliteOutboxStore]:
    """The SQLite outbox at ``db_path``, open, counting on ``metrics``."""
    async with opened(SqliteOutboxStore(db_path, metrics=metrics)) as store:
        yield store


@pytest.fixture
async def state(db_path: Path, outbox: SqliteOutboxStore) -> AsyncIterator[SqliteStateStore]:
    """The SQLite state store, opened while the outbox has the same file open."""
    async with opened(SqliteStateStore(db_path)) as store:
        yield store


# A webhook URL nothing listens on: for Alertmanagers used only for their silences API.
NOWHERE = "http://127.0.0.1:9/unused"


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerProcess]:
    """One real Alertmanager per module, for its API (silences); it notifies nobody."""
    process = AlertmanagerProcess(tmp_path_factory.mktemp("am"), NOWHERE)
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[Callable[..., AlertmanagerProcess]]:
    """Starts a real Alertmanager of this test, notifying ``webhook_url`` (with
    ``bearer_token``); it is killed when the test ends."""
    started: list[AlertmanagerProcess] = []

    def start(webhook_url: str = NOWHERE, bearer_token: str | None = None) -> AlertmanagerProcess:
        process = AlertmanagerProcess(tmp_path, webhook_url, bearer_token)
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            process.kill()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on loopback for the module (skipped locally
    without Debian's postgresql binaries, a failure under CI=true); each test
    takes a fresh database with ``postgres.create_database()``."""
    with PostgresServer(require_postgres()) as server:
        yield server
