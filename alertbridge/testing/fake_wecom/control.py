"""The fake's Python API for tests: inject faults and refusals, expire tokens
and media, mint response codes, set contacts, reset, and inspect what was
delivered, dropped, uploaded and updated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from alertbridge.testing.fake_wecom.faults import Fault, _check_endpoint, _FaultRate
from alertbridge.testing.fake_wecom.records import CardUpdate, Message, Upload, _IssuedCode
from alertbridge.testing.fake_wecom.spec import ENDPOINTS, GETTOKEN
from alertbridge.testing.fake_wecom.state import FakeState


class FakeControl(FakeState):
    """What tests call on ``FakeWeCom`` to steer and inspect it."""

    # ---- control (Python API) ----------------------------------------

    def add_fault(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with ``fault``."""
        _check_endpoint(endpoint)
        with self._lock:
            self._fault_queues[endpoint].extend([fault] * times)

    def set_fault_rate(self, endpoint: str, fault: Fault, probability: float) -> None:
        """Answer each request to ``endpoint`` with ``fault`` with this probability (0 clears)."""
        _check_endpoint(endpoint)
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        with self._lock:
            if probability:
                self._fault_rates[endpoint] = _FaultRate(fault, probability)
            else:
                self._fault_rates.pop(endpoint, None)

    def clear_faults(self) -> None:
        with self._lock:
            for queue in self._fault_queues.values():
                queue.clear()
            self._fault_rates.clear()

    def refuse_text(self, text: str, errcode: int = 40033, errmsg: str = "invalid charset") -> None:
        """Refuse every message/send and webhook/send request whose body contains
        ``text`` with ``errcode`` — a stand-in for content WeCom refuses, such as a
        control character (40033), whatever templates do to the real one."""
        with self._lock:
            self._refused_texts[text] = (errcode, errmsg)

    def expire_tokens(self) -> None:
        """Expire every token issued so far (the next use answers 42001)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = float("-inf")

    def disable_robot(self, key: str) -> None:
        """Make ``key``'s robot answer 93004, as a robot an admin switched off."""
        with self._lock:
            self._disabled_robots.add(key)

    def new_response_code_for(self, task_id: str, *, agent_id: int | None = None) -> str:
        """Mint a fresh one-use response_code for the card ``task_id``, as WeCom puts
        one into every ``template_card_event`` callback.

        ``agent_id`` picks the app when several sent a card with this task_id.

        Raises:
            ValueError: no card (or more than one) with this task_id was sent.
        """
        with self._lock:
            owners = [a for (a, t) in self._task_ids if t == task_id and agent_id in (None, a)]
            if len(owners) != 1:
                found = "no card" if not owners else "cards of several apps"
                raise ValueError(f"{found} with task_id {task_id!r} was sent; pass agent_id")
            return self._issue_code(owners[0], task_id)

    def set_contacts(
        self,
        *,
        user_departments: Mapping[str, Iterable[int]] | None = None,
        tag_members: Mapping[str, tuple[Iterable[str], Iterable[int]]] | None = None,
        contact_errcode: int | None = None,
    ) -> None:
        """Replace what ``user/get`` and ``tag/get`` answer (``None`` keeps a table;
        ``contact_errcode`` is always set: None answers normally again)."""
        with self._lock:
            if user_departments is not None:
                self.user_departments = {u.casefold(): list(d) for u, d in user_departments.items()}
            if tag_members is not None:
                self.tag_members = {t: (list(u), list(p)) for t, (u, p) in tag_members.items()}
            self.contact_errcode = contact_errcode

    def expire_media(self) -> None:
        """Expire every media id uploaded so far (messages naming one answer 40007)."""
        with self._lock:
            for media_id, upload in self._media.items():
                self._media[media_id] = replace(upload, created_at=float("-inf"))

    def reset(self) -> None:
        """Forget messages, uploads, card task ids and response codes, counters,
        faults, rate windows and duplicate memory.

        Issued tokens and uploaded media ids stay valid, so clients holding
        one keep working.
        """
        with self._lock:
            self._clear()

    # ---- inspection (Python API) -------------------------------------

    def messages(self, endpoint: str | None = None) -> list[Message]:
        """Delivered messages, oldest first, optionally of one endpoint."""
        with self._lock:
            return [m for m in self._delivered if endpoint is None or m.endpoint == endpoint]

    def uploads(self) -> list[Upload]:
        """Accepted ``media/upload`` calls, oldest first."""
        with self._lock:
            return list(self._uploads)

    def card_updates(self) -> list[CardUpdate]:
        """Accepted ``message/update_template_card`` calls, oldest first."""
        with self._lock:
            return list(self._card_updates)

    def dropped(self) -> list[Message]:
        """Messages answered ok but not delivered (duplicates, per-member rate limits)."""
        with self._lock:
            return list(self._dropped)

    @property
    def gettoken_calls(self) -> int:
        return self.request_count(GETTOKEN)

    def request_count(self, endpoint: str) -> int:
        """Requests received by ``endpoint``, whatever their outcome."""
        with self._lock:
            return self._requests[endpoint]

    def issued_tokens(self) -> list[str]:
        """Every access token handed out (tests check that none leaks into logs or errors)."""
        with self._lock:
            return list(self._tokens)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "gettoken_calls": self._requests[GETTOKEN],
                "requests": dict(self._requests),
                "delivered": len(self._delivered),
                "dropped": len(self._dropped),
                "tokens_issued": len(self._tokens),
            }

    def _clear(self) -> None:
        self._delivered: list[Message] = []
        self._dropped: list[Message] = []
        self._requests: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._fault_queues: dict[str, deque[Fault]] = {e: deque() for e in ENDPOINTS}
        self._fault_rates: dict[str, _FaultRate] = {}
        self._member_sends: dict[tuple[int, str], deque[float]] = {}
        self._robot_sends: dict[str, deque[float]] = {}
        self._seen_bodies: dict[tuple[int, str], tuple[float, str]] = {}
        self._task_ids: set[tuple[int, str]] = set()
        self._response_codes: dict[str, _IssuedCode] = {}
        self._card_updates: list[CardUpdate] = []
        self._uploads: list[Upload] = []
        self._refused_texts: dict[str, tuple[int, str]] = {}
        self.recall.clear()
        self.appchats.clear()
