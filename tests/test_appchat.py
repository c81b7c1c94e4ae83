"""The ``appchat`` receiver: the app posts into a group chat it created, within
WeCom's per-member chat limits (200 a minute, 10,000 a day), and the
``alertbridge appchat create|show`` commands that make and read such chats.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from alertbridge.cli import main
from alertbridge.config import Config, parse_config
from alertbridge.errors import ConfigError
from alertbridge.stores import DeliveryStatus
from alertbridge.testing.fake_appchat import FakeChat
from alertbridge.testing.fake_wecom import APPCHAT_GET, APPCHAT_SEND, FakeApp, FakeWeCom, ManualClock
from alertbridge.testing.server import SwappableApp
from tests.callback_bridge import AES_KEY, TOKEN, Bridge
from tests.dispatch_rig import rig_for, storm_group
from tests.harness import wait_until
from tests.test_resolve_recall import ops_config
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

MEMBERS = ("zhangsan", "lisi", "zhaoliu")


def chat_config(base_url: str, db: Path, chats: dict[str, str]) -> Config:
    """``chats``: receiver name -> chatid."""
    return ops_config(
        base_url,
        db,
        {
            name: {"channel": "appchat", "app": "ops", "chatid": chatid, "msgtype": "markdown"}
            for name, chatid in chats.items()
        },
    )


def make_chat(fake: FakeWeCom, chatid: str, members: tuple[str, ...] = MEMBERS) -> None:
    fake.appchats.add_chat(FakeChat(chatid, chatid, members[0], members, AGENT_ID))


def test_an_alert_reaches_the_chat_with_the_apps_identity(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    make_chat(wecom, "opsroom")
    config = chat_config(serve_wecom(wecom), tmp_path / "a.db", {"room": "opsroom"})
    bridge = Bridge(serve_app(config), wecom, tmp_path / "a.db")
    bridge.post_alert("room")
    wait_until(lambda: len(wecom.messages(APPCHAT_SEND)) == 1, what="the chat message")
    (posted,) = wecom.messages(APPCHAT_SEND)
    assert posted.agent_id == AGENT_ID and posted.body["chatid"] == "opsroom"
    assert posted.msgtype == "markdown" and posted.to_user == MEMBERS
    # After the send the chat's members are looked up, for their budgets.
    wait_until(lambda: wecom.request_count(APPCHAT_GET) == 1, what="the member lookup")


async def test_two_chats_sharing_a_member_keep_within_that_members_limit(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    """zhaoliu is in both chats: 150 alerts to each in one minute would bring
    him 300 chat messages, and WeCom would silently drop 100. The budget counts
    both chats against him, so what does not fit waits or goes into digests,
    and nothing is dropped."""
    make_chat(rig_wecom, "roomA", ("zhangsan", "zhaoliu"))
    make_chat(rig_wecom, "roomB", ("lisi", "zhaoliu"))
    config = chat_config(wecom_slot[1], tmp_path / "b.db", {"a": "roomA", "b": "roomB"})
    async with rig_for(config, rig_wecom, rig_clock) as rig:
        for name in ("a", "b"):  # one message each: the members are known from then on
            await rig.enqueue(name, storm_group(0))
            await rig.drain()
        for number in range(1, 151):
            for name in ("a", "b"):
                await rig.enqueue(name, storm_group(number))
        await rig.drain()
        statuses = await rig.statuses()
    assert rig_wecom.dropped() == []
    to_zhaoliu = [m for m in rig_wecom.messages(APPCHAT_SEND) if "zhaoliu" in m.to_user]
    assert 150 <= len(to_zhaoliu) <= 200
    assert statuses[DeliveryStatus.DEAD] == 0


async def test_a_chat_the_app_did_not_create_is_a_dead_letter_that_says_why(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    rig_wecom.appchats.add_chat(FakeChat("theirs", "x", "lisi", ("lisi", "zhaoliu"), AGENT_ID + 1))
    config = chat_config(wecom_slot[1], tmp_path / "c.db", {"a": "theirs", "b": "nosuchchat"})
    async with rig_for(config, rig_wecom, rig_clock) as rig:
        first = await rig.enqueue("a", storm_group(1))
        second = await rig.enqueue("b", storm_group(2))
        await rig.drain()
        dead = [await rig.outbox.get(first), await rig.outbox.get(second)]
    assert [d.status if d else None for d in dead] == [DeliveryStatus.DEAD, DeliveryStatus.DEAD]
    assert "86008" in (dead[0].last_error or "") and "chats it created" in (dead[0].last_error or "")
    assert "86003" in (dead[1].last_error or "") and "appchat create" in (dead[1].last_error or "")


def cli_config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "alertbridge.toml"
    path.write_text(
        f'[server]\nlanguage = "en"\n[wecom]\napi_base = "{base_url}"\n'
        f'[wecom.apps.ops]\ncorp_id = "{CORP_ID}"\nagent_id = {AGENT_ID}\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    return path


def test_the_cli_creates_and_shows_a_chat(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], capsys: pytest.CaptureFixture[str]
) -> None:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    config = cli_config(tmp_path, serve_wecom(wecom))
    create = ["appchat", "create", "-c", str(config), "--app", "ops", "--name", "值班群"]
    assert main([*create, "--owner", "zhangsan", "--users", "zhangsan,lisi", "--chatid", "oncall1"]) == 0
    assert 'chatid = "oncall1"' in capsys.readouterr().out
    assert [(c.chatid, c.owner, c.userlist) for c in wecom.appchats.chats()] == [
        ("oncall1", "zhangsan", ("zhangsan", "lisi"))
    ]

    assert main(["appchat", "show", "-c", str(config), "--app", "ops", "oncall1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "chatid: oncall1",
        "name: 值班群",
        "owner: zhangsan",
        "members: zhangsan, lisi",
    ]

    # The same chatid again, an unknown chat, an app that may not use appchat: each says why.
    assert main([*create, "--owner", "zhangsan", "--users", "zhangsan,lisi", "--chatid", "oncall1"]) == 1
    assert "86215" in capsys.readouterr().err
    assert main(["appchat", "show", "-c", str(config), "--app", "ops", "nosuchchat"]) == 1
    assert "86003" in capsys.readouterr().err
    wecom.appchats.deny(AGENT_ID)
    assert main(["appchat", "show", "-c", str(config), "--app", "ops", "oncall1"]) == 1
    assert "root department" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["appchat", "show", "-c", str(config), "--app", "ops"])


def test_the_fake_holds_appchat_to_wecoms_rules(fake_wecom: tuple[FakeWeCom, str]) -> None:
    """A card cannot go into a chat (40008); a chat's name is cut to 50
    characters; a chat needs two members (40058)."""
    fake, base_url = fake_wecom
    with httpx.Client(base_url=base_url, timeout=5) as http:
        token = http.get("/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET}).json()[
            "access_token"
        ]
        params = {"access_token": token}
        created = http.post(
            "/cgi-bin/appchat/create", params=params, json={"name": "x" * 60, "userlist": ["a", "b"]}
        ).json()
        assert created["errcode"] == 0
        (chat,) = fake.appchats.chats()
        assert chat.name == "x" * 50 and chat.chatid == created["chatid"] and chat.owner == "a"
        card = {
            "chatid": chat.chatid,
            "msgtype": "template_card",
            "template_card": {"card_type": "text_notice"},
        }
        assert http.post("/cgi-bin/appchat/send", params=params, json=card).json()["errcode"] == 40008
        lonely = http.post("/cgi-bin/appchat/create", params=params, json={"userlist": ["a"]}).json()
        assert lonely["errcode"] == 40058
        text = {"chatid": chat.chatid, "msgtype": "text", "text": {"content": "hi"}}
        answer = http.post("/cgi-bin/appchat/send", params=params, json=text).json()
        assert answer == {"errcode": 0, "errmsg": "ok"}  # no msgid: chat messages cannot be recalled
        listed = http.get("/_fake/appchats").json()
        assert [(c["chatid"], c["userlist"]) for c in listed] == [(chat.chatid, ["a", "b"])]


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ({"on_resolve": "recall"}, "receivers.room.on_resolve"),  # appchat/send answers no msgid
        ({"app": "nosuchapp"}, "receivers.room.app"),
        ({"chatid": "not-a-chatid!"}, "receivers.room.chatid"),
    ],
)
def test_what_a_chat_cannot_do_is_a_config_error(setting: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "wecom": {"apps": {"ops": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET}}},
                "receivers": {"room": {"channel": "appchat", "app": "ops", "chatid": "r1", **setting}},
            },
            {},
            "x.toml",
        )
    assert f"x.toml: {key}:" in str(caught.value)


def test_a_reply_from_a_chat_member_is_handled_like_any_other(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    """Whether WeCom calls the app back for messages in its chats is not
    documented; a callback that does arrive (here, straight into the app's
    conversation) is authorized from the chat receiver's allow-lists like
    any other: a listed member may ack, another chat member may not."""
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    make_chat(wecom, "opsroom")
    app = {
        "corp_id": CORP_ID,
        "agent_id": AGENT_ID,
        "secret": SECRET,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
    }
    config = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'r.db'}"},
            "wecom": {"api_base": serve_wecom(wecom), "apps": {"ops": app}},
            "receivers": {
                "room": {"channel": "appchat", "app": "ops", "chatid": "opsroom", "allow_ack": ["zhaoliu"]}
            },
        },
        {},
        "test.toml",
    )
    bridge = Bridge(serve_app(config), wecom, tmp_path / "r.db")
    bridge.post_alert("room")
    wait_until(lambda: len(wecom.messages(APPCHAT_SEND)) == 1, what="the chat message")
    with bridge.callback() as member:
        assert member.send_text("lisi", "ack 1").status_code == 200
        wait_until(lambda: len(bridge.audit()) == 1, what="lisi's ack")
        assert member.send_text("zhaoliu", "ack 1").status_code == 200
        wait_until(lambda: len(bridge.audit()) == 2, what="zhaoliu's ack")
    assert bridge.audit() == [("lisi", "ack", "refused"), ("zhaoliu", "ack", "ok")]


def test_check_config_online_asks_for_each_chat(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], capsys: pytest.CaptureFixture[str]
) -> None:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    make_chat(wecom, "opsroom")
    config = cli_config(tmp_path, serve_wecom(wecom))
    with config.open("a", encoding="utf-8") as toml:
        for name, chatid in (("room", "opsroom"), ("gone", "nosuchchat")):
            toml.write(f'[receivers.{name}]\nchannel = "appchat"\napp = "ops"\nchatid = "{chatid}"\n')
    assert main(["check-config", "--online", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert "receivers.room.chatid" in out and "chat opsroom is this app's (3 members)" in out
    assert "receivers.gone.chatid" in out and "86003" in out
    assert wecom.messages() == []  # nothing sent
