"""SendBudget: sliding windows per WeCom rate-limit key, and which keys a message counts against."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alertbridge.config import Config, ReceiverConfig, parse_config
from alertbridge.delivery import SendBudget
from alertbridge.message import Recipients
from alertbridge.messengers import DAY, HOUR, MINUTE, RateLimit
from alertbridge.messengers.wecom import limits
from alertbridge.messengers.wecom.limits import robot_budget_key

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MEMBER = (RateLimit("u", MINUTE, 30), RateLimit("u", HOUR, 1000))


def limits_for(config: Config, receiver: ReceiverConfig, recipients: Recipients) -> tuple[RateLimit, ...]:
    """The limits WeCom counts a message against, from the whole config."""
    return limits.limits_for(config.wecom, config.receivers.values(), receiver, recipients)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_thirty_a_minute_then_the_oldest_send_must_age_out() -> None:
    budget = SendBudget()
    for i in range(30):
        assert budget.reserve(MEMBER, at(i))
    assert budget.available(MEMBER, at(30)) == 0
    assert not budget.reserve(MEMBER, at(30))
    # The window slides: the send at t=0 stops counting a full minute later.
    assert budget.next_free(MEMBER, at(30)) == at(60)
    assert budget.available(MEMBER, at(59.999)) == 0
    assert budget.available(MEMBER, at(60)) == 1
    assert budget.available(MEMBER, at(89)) == 30


def test_the_hour_limit_binds_once_minutes_no_longer_do() -> None:
    budget = SendBudget()
    for minute in range(34):
        for i in range(30):
            budget.reserve(MEMBER, at(minute * 60 + i))
    # 34 × 30 = 1020 attempts; only 1000 fit in an hour.
    assert budget.available(MEMBER, at(34 * 60)) == 0
    free = budget.next_free(MEMBER, at(34 * 60))
    assert free == at(3600)  # the first send of the hour ages out
    assert budget.available(MEMBER, free) == 1


def test_refund_gives_back_a_failed_send_and_settle_moves_it_to_when_wecom_answered() -> None:
    budget = SendBudget()
    budget.reserve(MEMBER, at(0))
    budget.refund(MEMBER, at(0))
    assert budget.available(MEMBER, at(0)) == 30
    for _ in range(30):
        budget.reserve(MEMBER, at(0))
    # WeCom answered 5 s later: that is when it counted the send.
    budget.settle(MEMBER, at(0), at(5))
    assert budget.next_free(MEMBER, at(10)) == at(60)
    # The 29 sends counted at t=0 have aged out at t=60; the settled one only at t=65.
    assert budget.available(MEMBER, at(61)) == 29
    for _ in range(29):
        budget.reserve(MEMBER, at(61))
    assert budget.next_free(MEMBER, at(61)) == at(65)


def test_forget_before_drops_what_no_window_counts() -> None:
    budget = SendBudget()
    budget.reserve(MEMBER, at(0))
    budget.forget_before(at(1))
    assert budget.available([RateLimit("u", HOUR, 1)], at(2)) == 1


def test_load_restores_sends_from_before_a_restart() -> None:
    budget = SendBudget()
    budget.load([("u", at(i)) for i in range(30)])
    assert budget.available(MEMBER, at(40)) == 0
    assert budget.available([RateLimit("other", MINUTE, 30)], at(40)) == 30


def test_no_limits_means_unlimited() -> None:
    budget = SendBudget()
    assert budget.available((), at(0)) > 10_000
    assert budget.next_free((), at(0)) == at(0)


def config_with(**receivers: dict[str, object]):  # type: ignore[no-untyped-def]
    return parse_config(
        {
            "wecom": {
                "apps": {
                    "ops": {
                        "corp_id": "ww1",
                        "agent_id": 1000002,
                        "secret": "s",
                        "rate_limit_per_minute": 10,
                    },
                    "alias": {"corp_id": "ww1", "agent_id": 1000002, "secret": "s"},
                }
            },
            "receivers": receivers,
        },
        {},
        "t.toml",
    )


def test_app_limits_are_per_member_party_and_tag_of_the_wecom_app() -> None:
    config = config_with(oncall={"channel": "app", "app": "ops", "to_user": ["ZhangSan"]})
    limits = limits_for(
        config,
        config.receivers["oncall"],
        Recipients(to_user=("ZhangSan", "lisi"), to_party=("2",), to_tag=("7",)),
    )
    keys = {limit.key for limit in limits}
    assert keys == {
        "app:ww1:1000002:user:zhangsan",  # WeCom user ids are case-insensitive
        "app:ww1:1000002:user:lisi",
        "app:ww1:1000002:party:2",
        "app:ww1:1000002:tag:7",
    }
    assert {(limit.window, limit.allowed) for limit in limits} == {(MINUTE, 10), (HOUR, 1000)}


def test_two_names_for_one_wecom_app_share_its_budget() -> None:
    config = config_with(
        a={"channel": "app", "app": "ops", "to_user": ["u"]},
        b={"channel": "app", "app": "alias", "to_user": ["u"]},
    )
    recipients = Recipients(to_user=("u",))
    keys_a = {limit.key for limit in limits_for(config, config.receivers["a"], recipients)}
    keys_b = {limit.key for limit in limits_for(config, config.receivers["b"], recipients)}
    assert keys_a == keys_b


def test_robot_budget_is_keyed_by_a_hash_and_shared_at_the_lowest_limit() -> None:
    config = config_with(
        room={"channel": "robot", "robot_key": "secret-robot-key"},
        room_quiet={"channel": "robot", "robot_key": "secret-robot-key", "rate_limit_per_minute": 5},
        other={"channel": "robot", "robot_key": "another-key"},
    )
    (limit,) = limits_for(config, config.receivers["room"], Recipients())
    assert "secret-robot-key" not in limit.key
    assert limit == RateLimit(robot_budget_key("secret-robot-key"), MINUTE, 5)
    (other,) = limits_for(config, config.receivers["other"], Recipients())
    assert other.allowed == 20 and other.key != limit.key


def test_console_receivers_have_no_limits() -> None:
    config = config_with(console={"channel": "console"})
    assert limits_for(config, config.receivers["console"], Recipients()) == ()


def test_a_chat_member_gets_200_a_minute_until_the_days_10000() -> None:
    """appchat: WeCom's 10,000 a day per member is counted over any 24 hours,
    not cut down to an hour's share: a busy hour may take all of it."""
    app = config_with(oncall={"channel": "app", "app": "ops", "to_user": ["zhangsan"]}).wecom.apps["ops"]
    chat = limits.appchat_limits(app, "ops1", ["zhangsan"])
    budget = SendBudget()
    for minute in range(50):
        for i in range(200):
            assert budget.reserve(chat, at(minute * 60 + i * 0.25)), f"minute {minute}, send {i}"
        assert not budget.reserve(chat, at(minute * 60 + 50))
    assert budget.available(chat, at(51 * 60)) == 0
    # The first send ages out of the day a day later.
    assert budget.next_free(chat, at(51 * 60)) == T0 + DAY
    budget.forget_before(at(51 * 60) - DAY)
    assert budget.available(chat, T0 + DAY - timedelta(seconds=1)) == 0
