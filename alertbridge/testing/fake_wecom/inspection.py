"""The same control and inspection over HTTP under ``/_fake/``, for tests and
benchmarks that run the fake in another process.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertbridge.testing.fake_wecom.control import FakeControl
from alertbridge.testing.fake_wecom.faults import Fault


class HttpInspection(FakeControl):
    """The ``/_fake/*`` routes, each a thin JSON wrapper of a ``FakeControl`` call."""

    async def _http_messages(self, request: Request) -> Response:
        endpoint = request.query_params.get("endpoint")
        return JSONResponse([m.to_json() for m in self.messages(endpoint)])

    async def _http_dropped(self, request: Request) -> Response:
        return JSONResponse([m.to_json() for m in self.dropped()])

    async def _http_uploads(self, request: Request) -> Response:
        return JSONResponse([u.to_json() for u in self.uploads()])

    async def _http_expire_media(self, request: Request) -> Response:
        self.expire_media()
        return JSONResponse({"ok": True})

    async def _http_card_updates(self, request: Request) -> Response:
        return JSONResponse([u.to_json() for u in self.card_updates()])

    async def _http_response_codes(self, request: Request) -> Response:
        """POST ``{"task_id", "agent_id"?}``: mint a callback response_code (``new_response_code_for``)."""
        try:
            data = json.loads(await request.body())
            agent_id = data.get("agent_id")
            code = self.new_response_code_for(
                str(data["task_id"]), agent_id=None if agent_id is None else int(agent_id)
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "response_code": code})

    async def _http_contacts(self, request: Request) -> Response:
        """POST ``{"user_departments"?: {user: [ids]}, "tag_members"?: {tag: {"users": [], "parties": []}},
        "contact_errcode"?: 60011}``: what ``user/get`` and ``tag/get`` answer (``set_contacts``)."""
        try:
            data = json.loads(await request.body())
            departments = data.get("user_departments")
            tags = data.get("tag_members")
            errcode = data.get("contact_errcode")
            self.set_contacts(
                user_departments=None
                if departments is None
                else {str(u): [int(d) for d in ids] for u, ids in departments.items()},
                tag_members=None
                if tags is None
                else {
                    str(t): ([str(u) for u in m.get("users", [])], [int(p) for p in m.get("parties", [])])
                    for t, m in tags.items()
                },
                contact_errcode=None if errcode is None else int(errcode),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _http_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _http_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def _http_expire_tokens(self, request: Request) -> Response:
        self.expire_tokens()
        return JSONResponse({"ok": True})

    async def _http_faults(self, request: Request) -> Response:
        """POST ``{"endpoint", "errcode"?, "errmsg"?, "status"?, "delay"?, "times"? | "probability"?}``;
        DELETE clears every fault."""
        if request.method == "DELETE":
            self.clear_faults()
            return JSONResponse({"ok": True})
        try:
            data = json.loads(await request.body())
            endpoint = str(data["endpoint"])
            fault = Fault.from_json(data)
            if "probability" in data:
                self.set_fault_rate(endpoint, fault, float(data["probability"]))
            else:
                self.add_fault(endpoint, fault, int(data.get("times", 1)))
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})
