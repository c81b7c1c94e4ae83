"""The fixed corpus of hostile inputs (tests/data/fuzz_corpus/manifest.json)
and its replayer: the config and secrets of the ``alertbridge serve`` it runs
against, and the checks of every answer. tests/test_fuzz_corpus.py replays it
case by case; tests/test_secrets_in_logs.py replays it and greps the logs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from alertbridge.testing.wecom_callback import CallbackClient
from tests.fuzz_inputs import Target

CORPUS = Path(__file__).parent / "data" / "fuzz_corpus"
MANIFEST = CORPUS / "manifest.json"

CORP_ID = "wwcorpus"
AGENT_ID = 1
CORP_SECRET = "corpus-corp-secret-Vb73Kq1x"
WEBHOOK_TOKEN = "corpus-webhook-token-Pm58Ws2d"
CALLBACK_TOKEN = "corpusCbToken4Rt9"
AES_KEY = "1lJP6iigrOPhtJMphIWX7CsovGhBv0KJcxDV38hivR8"
CALLBACK_PATH = "/wecom/callback/ops"
# A committed corpus file stays small; big inputs are generated from the manifest.
MAX_FILE_BYTES = 20_000


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    name: str
    body: bytes
    targets: tuple[str, ...]  # alertmanager, grafana, callback
    content_type: str
    expect: dict[str, tuple[int, ...]]  # target -> acceptable statuses
    method: str
    query: dict[str, str] | None  # callback query ("{now}" = the current time); None when signed
    signed: bool  # callback: the body is the decrypted message, to be encrypted and signed
    why: str


def _expectations(raw: object, targets: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """The manifest's ``expect`` (a status, a list, or a map per target) as a map per target."""

    def statuses(value: object) -> tuple[int, ...]:
        return tuple(value) if isinstance(value, list) else (int(value),)  # type: ignore[call-overload]

    if isinstance(raw, dict):
        return {target: statuses(raw[target]) for target in targets}
    return dict.fromkeys(targets, statuses(raw))


def load_corpus() -> list[CorpusEntry]:
    """Every manifest entry with its body read (or generated)."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    entries: list[CorpusEntry] = []
    for raw in manifest["entries"]:
        if "file" in raw:
            name = raw["file"]
            body = (CORPUS / name).read_bytes()
        else:
            name = raw["name"]
            body = b"".join(text.encode("utf-8") * times for text, times in raw["generate"])
        targets = tuple(raw["targets"])
        entries.append(
            CorpusEntry(
                name=name,
                body=body,
                targets=targets,
                content_type=raw["content_type"],
                expect=_expectations(raw["expect"], targets),
                method=raw.get("method", "POST"),
                query=raw.get("query"),
                signed=bool(raw.get("signed", False)),
                why=raw["why"],
            )
        )
    return entries


def corpus_config(api_base: str, extra: str = "") -> str:
    """alertbridge's TOML for a corpus replay: webhook auth, a callback-enabled
    app ``ops`` talking to ``api_base``, and a console receiver ``sink``."""
    return f"""
[webhook_auth]
bearer_token = "${{CORPUS_WEBHOOK_TOKEN}}"
[wecom]
api_base = "{api_base}"
timeout = "2s"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{CORPUS_CORP_SECRET}}"
token = "${{CORPUS_CALLBACK_TOKEN}}"
encoding_aes_key = "${{CORPUS_AES_KEY}}"
[receivers.sink]
channel = "console"
{extra}"""


def corpus_env() -> dict[str, str]:
    return {
        "CORPUS_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "CORPUS_CORP_SECRET": CORP_SECRET,
        "CORPUS_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "CORPUS_AES_KEY": AES_KEY,
    }


class Replayer:
    """Sends corpus entries to one running alertbridge and checks each answer.

    Webhook checks reuse ``Target`` from the property tests (authenticated
    here with the bearer token); callbacks are signed, when the entry asks,
    by ``CallbackClient`` exactly as WeCom would.
    """

    def __init__(self, base_url: str, db: Path, logs: Callable[[], str]) -> None:
        self.logs = logs
        self.target = Target(base_url, db)
        self.target.http.headers["Authorization"] = f"Bearer {WEBHOOK_TOKEN}"
        self.db = db
        self.wecom = CallbackClient(base_url, CALLBACK_PATH, CALLBACK_TOKEN, AES_KEY, CORP_ID, AGENT_ID)

    def close(self) -> None:
        self.target.http.close()
        self.wecom.close()

    def stored(self) -> tuple[int, int]:
        """(deliveries, callback dedup keys): what an accepted request leaves behind."""
        with sqlite3.connect(self.db) as db:
            deliveries = int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])
            keys = int(db.execute("SELECT count(*) FROM callback_keys").fetchone()[0])
        return deliveries, keys

    def replay(self, entry: CorpusEntry, target: str) -> httpx.Response | None:
        """Send ``entry`` to ``target``; assert the status, the reason, what was
        stored, and that the server logged no traceback meanwhile."""
        before, log_offset = self.stored(), len(self.logs())
        response = self.send(entry, target)
        if response is None:  # refused as too large by cutting the upload short
            assert self.stored() == before, entry.name
            assert self.target.http.get("/readyz").status_code == 200, entry.name
            assert "Traceback" not in self.logs()[log_offset:], entry.name
            return None
        status = response.status_code
        context = (entry.name, target, status, response.text[:300], entry.why)
        assert status < 500, context
        assert status in entry.expect[target], context
        after = self.stored()
        if status == 200:
            if target == "callback":
                assert after == (before[0], before[1] + 1), context  # its dedup key
            else:
                # Stored: one new delivery, or the earlier one it duplicates (dedup window).
                assert after[0] - before[0] in (0, 1) and after[1] == before[1], context
                assert self._exists(response.json()["delivery"]), context
        else:
            assert after == before, context  # nothing stored for a rejected request
            reason = response.json()["error"] if target != "callback" else response.text.strip()
            assert reason, context
            assert "\n" not in reason and len(reason) <= 300, context  # one short line, no echo of the input
        assert "Traceback" not in self.logs()[log_offset:], (context, self.logs()[log_offset:][-3000:])
        return response

    def _exists(self, delivery_id: int) -> bool:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)).fetchone() is not None

    def send(self, entry: CorpusEntry, target: str) -> httpx.Response | None:
        """Send ``entry`` to ``target`` as the manifest says, without checking the answer.

        None: the connection broke while a body expected to be refused as too
        large (413) was still uploading. The server answers 413 from the
        Content-Length and closes; the kernel then resets the connection over
        the unread rest of the body, which can discard the 413 before the
        client reads it. Any other entry's transport error is raised.
        """
        try:
            return self._send(entry, target)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            if 413 not in entry.expect[target]:
                raise
            return None

    def _send(self, entry: CorpusEntry, target: str) -> httpx.Response:
        request = self._request(entry, target)
        if 413 not in entry.expect[target]:
            return self.target.http.send(request)
        # The server closes the connection of a refused upload: keep it out of the shared pool,
        # where the next request would find it reset.
        with httpx.Client(timeout=10) as once:
            return once.send(request)

    def _request(self, entry: CorpusEntry, target: str) -> httpx.Request:
        if target in ("alertmanager", "grafana"):
            headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            if entry.content_type:
                headers["Content-Type"] = entry.content_type
            url = f"{self.target.base_url}/{target}/sink"
            return httpx.Request("POST", url, content=entry.body, headers=headers)
        if entry.signed:
            return self.wecom.build_message(entry.body)
        now = str(int(time.time()))
        params = {key: value.replace("{now}", now) for key, value in (entry.query or {}).items()}
        return self.wecom.build_raw(params, entry.body, method=entry.method)
