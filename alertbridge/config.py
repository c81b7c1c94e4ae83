"""Configuration: one TOML file, validated once at start-up into frozen objects.

``load_config(path, environ)`` reads the file with stdlib ``tomllib``,
substitutes ``${VAR}`` / ``${VAR:-default}`` in every string, validates with
pydantic and then checks the rules that span keys (a receiver naming an app
that does not exist …). Every problem found is reported at once in one
``ConfigError`` whose lines read ``FILE: key.path: what is wrong``.

This module holds the core sections; the messengers' own sections (``[wecom]``)
and receiver models (``channel = "app" | "robot" | "console"``) come from
``alertbridge.messengers.registry``: a receiver is validated by the model of
its ``channel``. What they share lives in ``alertbridge.config_base``.

Nothing else in alertbridge reads the environment or the file: the resulting
``Config`` is passed down from the composition root.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from alertbridge.addresses import AllowList
from alertbridge.config_base import NAME, Language, ReceiverBase, Section, duration_value
from alertbridge.config_env import dotted, substitute
from alertbridge.errors import ConfigError
from alertbridge.messengers.registry import RECEIVER_MODELS, MessengerSections, receiver_kinds
from alertbridge.stores.config import StoreConfig


class ServerConfig(Section):
    listen: str = "127.0.0.1:8080"
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    timezone: str = "Asia/Shanghai"
    language: Language = "zh"
    # POST /-/reload (same credentials as the webhooks) re-reads the config;
    # SIGHUP always does. None: on only when [webhook_auth] is set, since
    # without it anyone who reaches the port could make us re-read the file.
    reload_endpoint: bool | None = None
    # Limits before a request reaches the app (see alertbridge.web.limits):
    # request line + headers size (431 beyond), time to send them (408 and
    # close), time to send the body, and open connections (503 beyond).
    max_header_bytes: int = Field(default=16_384, ge=1024)
    header_timeout: timedelta = timedelta(seconds=10)
    body_timeout: timedelta = timedelta(seconds=30)
    max_connections: int = Field(default=512, gt=0)

    _parse_timeouts = field_validator("header_timeout", "body_timeout", mode="before")(duration_value)

    @field_validator("header_timeout", "body_timeout")
    @classmethod
    def _check_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (use an IANA name such as Asia/Shanghai)") from None
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class LogConfig(Section):
    # "auto": JSON lines when stderr is not a terminal (containers, systemd),
    # readable text when it is.
    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class BasicAuthConfig(Section):
    username: str = Field(min_length=1)
    password: SecretStr


class WebhookAuthConfig(Section):
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuthConfig | None = None

    @field_validator("bearer_token")
    @classmethod
    def _non_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("is empty; remove the key to disable webhook auth")
        return value


class DeliveryConfig(Section):
    """How the dispatcher retries: exponential backoff with jitter."""

    max_age: timedelta = timedelta(hours=24)
    initial_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(minutes=5)
    concurrency: int = Field(default=8, gt=0, le=256)
    # The same notification (same group, alerts and states) accepted again
    # within this window — from another Alertmanager HA peer, or a sender's
    # retry — is stored once. 0 turns it off.
    dedup_window: timedelta = timedelta(minutes=2)
    # WeCom drops an app message identical to one it accepted this recently
    # (its duplicate check, 1 s to 4 h). It only has to cover a re-send after
    # a timeout or a crash; longer, and a genuine repeat notification
    # (Alertmanager's repeat_interval) vanishes while logged as sent.
    duplicate_check_interval: Annotated[timedelta, Field(ge=timedelta(seconds=1), le=timedelta(hours=4))] = (
        timedelta(seconds=60)
    )

    _parse = field_validator(
        "max_age", "initial_backoff", "max_backoff", "dedup_window", "duplicate_check_interval", mode="before"
    )(duration_value)


class SilencerConfig(Section):
    """Where silences are created: an Alertmanager (HA peers tried in order),
    or Grafana's built-in Alertmanager (``url`` = the Grafana base URL)."""

    kind: Literal["alertmanager", "grafana"]
    url: list[str]
    # Grafana: a service-account token (Authorization: Bearer).
    token: SecretStr | None = None
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuthConfig | None = None
    timeout: Annotated[timedelta, Field(gt=timedelta(0))] = timedelta(seconds=10)

    _parse_timeout = field_validator("timeout", mode="before")(duration_value)

    @field_validator("url", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one URL")
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"must be http:// or https:// URLs, got {url!r}")
        return [url.rstrip("/") for url in value]


class ImagesConfig(Section):
    """Fetching alert images (Grafana panel screenshots) to post into WeCom.

    The URL comes from a webhook payload, so by default only public addresses
    are fetched; ``allow`` names hosts or networks (``grafana.internal``,
    ``10.0.0.0/8``) the operator trusts even when they are private.
    """

    allow: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=5 * 1024 * 1024, gt=0, le=10 * 1024 * 1024)
    timeout: Annotated[timedelta, Field(gt=timedelta(0))] = timedelta(seconds=10)
    max_redirects: int = Field(default=3, ge=0, le=10)

    _parse_timeout = field_validator("timeout", mode="before")(duration_value)

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, value: list[str]) -> list[str]:
        AllowList(value)
        return value


class CommandsConfig(Section):
    """Replies and buttons from WeCom: ack, silence, unsilence …"""

    # Labels left out of silence matchers because they change between
    # re-creations of the "same" alert (a restarted pod gets a new name).
    volatile_labels: list[str] = Field(
        default_factory=lambda: ["pod", "pod_name", "pod_ip", "container_id", "instance_id"]
    )
    max_silence: Annotated[timedelta, Field(gt=timedelta(0))] = timedelta(days=7)
    # How long an `ack_silences` silence lasts before alertbridge extends it.
    ack_silence_step: Annotated[timedelta, Field(gt=timedelta(0))] = timedelta(hours=2)
    # References stay valid this long after their group resolves.
    reference_retention: Annotated[timedelta, Field(gt=timedelta(0))] = timedelta(days=7)

    _parse = field_validator("max_silence", "ack_silence_step", "reference_retention", mode="before")(
        duration_value
    )


class TemplatesConfig(Section):
    # Searched before the built-in templates, so a file here overrides one there.
    dir: Path | None = None


# A configured receiver, whichever messenger's model it is.
ReceiverConfig = ReceiverBase


class Config(MessengerSections):
    server: ServerConfig = Field(default_factory=ServerConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    webhook_auth: WebhookAuthConfig | None = None
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    silencers: dict[str, SilencerConfig] = Field(default_factory=dict)
    receivers: dict[str, SerializeAsAny[ReceiverBase]] = Field(default_factory=dict)

    @field_validator("receivers", mode="before")
    @classmethod
    def _by_channel(cls, value: object, info: ValidationInfo) -> object:
        """Each receiver by the model of its ``channel`` (``context={"receiver_models": ...}``)."""
        if not isinstance(value, Mapping):
            return value
        models = tuple((info.context or {}).get("receiver_models", RECEIVER_MODELS))
        # Receivers passed as models (tests build configs so) are kept as they are.
        raw = {k: v for k, v in value.items() if not isinstance(v, ReceiverBase)}
        validated = _receivers_adapter(models).validate_python(raw)
        return {k: validated.get(k, v) for k, v in value.items()}

    def silencer_of(self, receiver: str) -> str | None:
        """The receiver's silencer; with exactly one defined, that one by default."""
        named = self.receivers[receiver].silencer
        if named is None and len(self.silencers) == 1:
            return next(iter(self.silencers))
        return named

    def language_of(self, receiver: str) -> Language:
        return self.receivers[receiver].language or self.server.language

    def secrets(self) -> list[str]:
        """Every secret value in the config, for log redaction and leak tests."""
        found: list[str] = []
        found.extend(self.store.url_secrets())
        found.extend(secret.get_secret_value() for secret in self.messenger_secrets())
        for receiver in self.receivers.values():
            found.extend(secret.get_secret_value() for secret in receiver.channel_secrets())
        for receiver in self.receivers.values():
            if receiver.grafana_hmac_secret is not None:
                found.append(receiver.grafana_hmac_secret.get_secret_value())
        for silencer in self.silencers.values():
            if silencer.token is not None:
                found.append(silencer.token.get_secret_value())
            if silencer.bearer_token is not None:
                found.append(silencer.bearer_token.get_secret_value())
            if silencer.basic_auth is not None:
                found.append(silencer.basic_auth.password.get_secret_value())
        if self.webhook_auth is not None:
            if self.webhook_auth.bearer_token is not None:
                found.append(self.webhook_auth.bearer_token.get_secret_value())
            if self.webhook_auth.basic_auth is not None:
                found.append(self.webhook_auth.basic_auth.password.get_secret_value())
        return [s for s in found if s]


@cache
def _receivers_adapter(models: tuple[type[ReceiverBase], ...]) -> TypeAdapter[dict[str, ReceiverBase]]:
    # A union built at run time: the models are only known then.
    receiver = Annotated[Union[models], Field(discriminator="channel")]  # type: ignore[valid-type]  # noqa: UP007
    return TypeAdapter(dict[str, receiver])


def load_config(
    path: str | Path,
    environ: Mapping[str, str],
    receiver_models: Sequence[type[ReceiverBase]] = RECEIVER_MODELS,
) -> Config:
    """Read, substitute, validate. Raises ``ConfigError`` listing every problem.

    ``receiver_models``: the receivers a config may have (a test's messenger adds its own)."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, [("", f"not valid TOML: {exc}")]) from None
    return parse_config(data, environ, source, receiver_models)


def parse_config(
    data: Mapping[str, Any],
    environ: Mapping[str, str],
    source: str,
    receiver_models: Sequence[type[ReceiverBase]] = RECEIVER_MODELS,
) -> Config:
    problems: list[tuple[str, str]] = []
    substituted = substitute(data, environ, (), problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        config = Config.model_validate(substituted, context={"receiver_models": receiver_models})
    except ValidationError as exc:
        kinds = receiver_kinds(receiver_models)
        raise ConfigError(source, [_describe(err, kinds) for err in exc.errors()]) from None
    problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError(source, problems)
    return config


def _describe(err: Mapping[str, Any], kinds: Sequence[str]) -> tuple[str, str]:
    loc = list(err["loc"])
    # A tagged union puts the tag into the location: receivers.NAME.<tag>.key.
    if len(loc) >= 3 and loc[0] == "receivers" and loc[2] in kinds:
        del loc[2]
    kind, message = err["type"], err["msg"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "union_tag_invalid":
        message = f"channel must be one of: {', '.join(kinds)}"
    elif kind == "union_tag_not_found":
        message = f"channel is missing (one of: {', '.join(kinds)})"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return dotted(tuple(loc)), message


def _cross_checks(config: Config) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    problems.extend(config.section_problems())
    for name, silencer in config.silencers.items():
        key = dotted(("silencers", name))
        if silencer.kind == "grafana":
            if silencer.token is None:
                problems.append((f"{key}.token", "a grafana silencer needs a service-account token"))
            if len(silencer.url) != 1:
                problems.append((f"{key}.url", "a grafana silencer takes one Grafana base URL"))
        elif silencer.token is not None:
            problems.append((f"{key}.token", 'only for kind = "grafana"; use bearer_token for Alertmanager'))
    for name, receiver in config.receivers.items():
        key = dotted(("receivers", name))
        if not NAME.match(name):
            problems.append((key, "receiver names may use letters, digits, _ . - (they appear in URLs)"))
        if receiver.silencer is not None and receiver.silencer not in config.silencers:
            known = ", ".join(sorted(config.silencers)) or "none defined"
            problems.append(
                (f"{key}.silencer", f"no silencer {receiver.silencer!r} in [silencers] ({known})")
            )
        if receiver.ack_silences and config.silencer_of(name) is None:
            problems.append((f"{key}.ack_silences", "needs `silencer` to name where silences are created"))
        if receiver.on_resolve is not None and receiver.on_resolve not in receiver.resolve_modes:
            problems.append(
                (
                    f"{key}.on_resolve",
                    f"{receiver.on_resolve!r} is not possible for channel = {receiver.channel!r}"
                    f" with msgtype = {receiver.msgtype!r} (possible: {', '.join(receiver.resolve_modes)})",
                )
            )
        problems.extend(config.receiver_problems(key, receiver))
    return problems
