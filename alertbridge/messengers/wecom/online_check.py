"""``check-config --online`` for WeCom: each app's credentials, each group chat,
each robot key's shape.

Each app gets a real ``gettoken`` and an ``agent/get`` (WeCom's read-only
call that fails when the agent id does not belong to the secret, or the app
is disabled), and each ``appchat`` receiver an ``appchat/get`` (the chat
exists, the app created it and may use appchat at all); robot keys are checked for their shape only (WeCom has no
send-free robot call). Secrets never appear: WeCom takes the secret in the
query string, so transport errors are described without the URL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import httpx

from alertbridge.config import Config
from alertbridge.messengers.wecom.config import AppChatReceiver, RobotReceiver, WeComAppConfig
from alertbridge.messengers.wecom.errcodes import classify
from alertbridge.online_check import Check

# What the errcodes a wrong config gets mean, and which key of the app to fix.
_WECOM_ERRORS: Final[Mapping[int, tuple[str, str]]] = {
    40001: ("secret", "invalid secret"),
    40013: ("corp_id", "invalid corp id"),
    40056: ("agent_id", "invalid agent id"),
    301002: ("agent_id", "the agent id belongs to another app than this secret"),
    60020: ("", "this host's IP is not in the app's trusted IPs (企业可信IP)"),
    48002: ("", "API not authorized for this app"),
    45009: ("", "API frequency limit; try again later"),
}
# A group robot's key, as WeCom shows it in the webhook URL.
_ROBOT_KEY: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


async def wecom_checks(http: httpx.AsyncClient, config: Config) -> AsyncIterator[Check]:
    """The checks of ``[wecom.apps]``, then of the robot receivers' keys, in config order."""
    for name, app in config.wecom.apps.items():
        for check in await _check_app(http, config, name, app):
            yield check
    for name, receiver in config.receivers.items():
        if isinstance(receiver, RobotReceiver):
            yield _check_robot_key(name, receiver)


async def _check_app(http: httpx.AsyncClient, config: Config, name: str, app: WeComAppConfig) -> list[Check]:
    key = f"wecom.apps.{name}"
    base = config.wecom.api_base
    timeout = config.wecom.timeout.total_seconds()
    secret = app.secret.get_secret_value()
    params = {"corpid": app.corp_id, "corpsecret": secret}
    answer = await _wecom_get(http, f"{base}/cgi-bin/gettoken", params, timeout, secret)
    if isinstance(answer, str):
        return [Check(key, False, f"WeCom at {base} {answer}")]
    failed = _wecom_failure(key, answer, secret)
    if failed is not None:
        return [failed]
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        return [Check(key, False, "WeCom's gettoken answer has no access_token")]
    checks = [Check(key, True, "gettoken: the secret is valid")]
    agent = await _wecom_get(
        http,
        f"{base}/cgi-bin/agent/get",
        {"access_token": token, "agentid": str(app.agent_id)},
        timeout,
        token,
    )
    if isinstance(agent, str):
        checks.append(Check(f"{key}.agent_id", False, f"WeCom at {base} {agent}"))
        return checks
    failed = _wecom_failure(key, agent, secret, token, default_field="agent_id")
    if failed is not None:
        checks.append(failed)
    elif agent.get("close") == 1:
        checks.append(Check(f"{key}.agent_id", False, "WeCom says the app is disabled (停用)"))
    else:
        shown = str(agent.get("name") or app.agent_id)[:40]
        checks.append(
            Check(f"{key}.agent_id", True, f"agent/get: agent {app.agent_id} ({shown}) is this app's")
        )
    for receiver_name, receiver in config.receivers.items():
        if isinstance(receiver, AppChatReceiver) and receiver.app == name:
            checks.append(
                await _check_chat(http, config, f"receivers.{receiver_name}.chatid", receiver, token)
            )
    return checks


async def _check_chat(
    http: httpx.AsyncClient, config: Config, key: str, receiver: AppChatReceiver, token: str
) -> Check:
    """``appchat/get`` of an appchat receiver's chat, with its app's token."""
    base = config.wecom.api_base
    params = {"access_token": token, "chatid": receiver.chatid}
    answer = await _wecom_get(
        http, f"{base}/cgi-bin/appchat/get", params, config.wecom.timeout.total_seconds(), token
    )
    if isinstance(answer, str):
        return Check(key, False, f"WeCom at {base} {answer}")
    errcode = answer.get("errcode", 0)
    if errcode != 0:
        why = classify(int(errcode)).hint if isinstance(errcode, int) else ""
        return Check(key, False, f"WeCom says {errcode} {why or 'appchat/get failed'}")
    info = answer.get("chat_info")
    users = info.get("userlist") if isinstance(info, dict) else None
    count = len(users) if isinstance(users, list) else 0
    return Check(key, True, f"appchat/get: chat {receiver.chatid} is this app's ({count} members)")


async def _wecom_get(
    http: httpx.AsyncClient, url: str, params: Mapping[str, str], timeout: float, secret: str
) -> dict[str, Any] | str:
    """WeCom's JSON answer, or why there is none (never the URL: it holds ``secret``)."""
    try:
        response = await http.get(url, params=params, timeout=timeout)
    except httpx.TimeoutException:
        return "timed out"
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return f"answered HTTP {response.status_code}"
    try:
        data = response.json()
    except ValueError:
        return "answered something that is not JSON"
    if not isinstance(data, dict):
        return "answered something that is not a JSON object"
    return data


def _wecom_failure(
    key: str, answer: Mapping[str, Any], *secrets: str, default_field: str = ""
) -> Check | None:
    errcode = answer.get("errcode", 0)
    if errcode == 0:
        return None
    field, meaning = _WECOM_ERRORS.get(int(errcode) if isinstance(errcode, int) else -1, (default_field, ""))
    if not meaning:
        meaning = str(answer.get("errmsg", ""))[:120]
        for secret in secrets:
            meaning = meaning.replace(secret, "***")
    return Check(f"{key}.{field}" if field else key, False, f"WeCom says {errcode} {meaning}".rstrip())


def _check_robot_key(name: str, receiver: RobotReceiver) -> Check:
    key = f"receivers.{name}.robot_key"
    if _ROBOT_KEY.fullmatch(receiver.robot_key.get_secret_value().strip()):
        return Check(key, True, "shaped like a robot key (not sent to: robots have no test call)")
    return Check(
        key,
        False,
        "not shaped like a robot key (8-4-4-4-12 hex digits, the key= of the robot's webhook URL)",
    )
