"""The contact reads ``user/get`` and ``tag/get``, from ``user_departments``
and ``tag_members``; ``contact_errcode`` answers both as to an app without
contact permission.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertbridge.testing.fake_wecom.parsing import _answer
from alertbridge.testing.fake_wecom.records import _Reject
from alertbridge.testing.fake_wecom.spec import TAG_GET, USER_GET
from alertbridge.testing.fake_wecom.state import FakeState


class ContactRoutes(FakeState):
    """``user/get`` (unknown member 60111) and ``tag/get`` (unknown tag 40068)."""

    async def _user_get(self, request: Request) -> Response:
        early = await self._begin(USER_GET, request)
        if early is not None:
            return early
        try:
            self._authorize(request.query_params.get("access_token", ""))
            userid = request.query_params.get("userid", "")
            with self._lock:
                denied = self.contact_errcode
                departments = self.user_departments.get(userid.casefold(), [1])
            if denied is not None:
                raise _Reject(denied, "no privilege to access/modify contact/party/agent")
            if not userid or (self.users is not None and userid.casefold() not in self.users):
                raise _Reject(60111, "userid not found")
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "userid": userid, "name": userid, "department": departments}
        )

    async def _tag_get(self, request: Request) -> Response:
        early = await self._begin(TAG_GET, request)
        if early is not None:
            return early
        try:
            self._authorize(request.query_params.get("access_token", ""))
            tagid = request.query_params.get("tagid", "")
            with self._lock:
                denied = self.contact_errcode
                members = self.tag_members.get(tagid)
            if denied is not None:
                raise _Reject(denied, "no privilege to access/modify contact/party/agent")
            if members is None:
                raise _Reject(40068, "invalid tagid")
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        users, parties = members
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "tagname": f"tag-{tagid}",
                "userlist": [{"userid": u, "name": u} for u in users],
                "partylist": parties,
            }
        )
