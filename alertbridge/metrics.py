"""Prometheus metrics: one registry per app, handed to the parts that count.

No globals: ``Metrics()`` owns a fresh ``CollectorRegistry``, so tests and
reloads never see each other's numbers. Labels are bounded by configuration
(receiver, channel, app and silencer names) or by small fixed sets (outcomes,
errcode names, command names); nothing a client sends and no secret is ever
a label value — an unknown receiver in a URL is counted as ``receiver=""``.

Gauges that describe the outbox are read from the store when scraped (see
``observe_outbox``, called by /metrics), so they are right even after a restart.
So are the connection pool's (``observe_pool``): a store without a pool
(SQLite, one connection) exports no pool series at all rather than zeros,
which would read as "every connection lost".
"""

from __future__ import annotations

import platform
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from alertbridge import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Every counter and histogram would also export a ``*_created`` series (its
# creation time): twice the series for nothing Prometheus uses. The switch is
# process-wide in prometheus_client; alertbridge never wants them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Accepted → sent: from tens of milliseconds (idle) to hours (WeCom down, retries).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)


class Metrics:
    """Every metric alertbridge exports, on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Gauge(
            "alertbridge_build_info", "Always 1; the running version.", ["version", "python"], registry=r
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.webhooks = Counter(
            "alertbridge_webhooks_received_total",
            "Webhook requests by source, receiver and outcome (accepted, rejected_payload, unauthorized, ...).",
            ["source", "receiver", "outcome"],
            registry=r,
        )
        self.messages = Counter(
            "alertbridge_messages_sent_total",
            "Messages handed to WeCom (or the console) by channel, receiver and outcome "
            "(sent, failed_transient, failed_permanent).",
            ["channel", "receiver", "outcome"],
            registry=r,
        )
        self.wecom_errors = Counter(
            "alertbridge_wecom_api_errors_total",
            "WeCom API errors by errcode name (or http_5xx, transport, ...).",
            ["error"],
            registry=r,
        )
        self.partial_deliveries = Counter(
            "alertbridge_wecom_partial_deliveries_total",
            "App messages WeCom accepted while naming recipients that did not get them "
            "(invaliduser, invalidparty, invalidtag, unlicenseduser), by app.",
            ["app"],
            registry=r,
        )
        self.token_replays = Counter(
            "alertbridge_wecom_token_replays_total",
            "WeCom calls replayed once with a fresh token after WeCom rejected the cached one, by app.",
            ["app"],
            registry=r,
        )
        self.media_cache = Counter(
            "alertbridge_wecom_media_cache_total",
            "Lookups of uploaded images' media ids by outcome (hit: no upload needed, miss).",
            ["outcome"],
            registry=r,
        )
        self.images = Counter(
            "alertbridge_images_total",
            "Alert images posted after a message by channel kind and outcome "
            "(sent, or why it was skipped: too_large, http_error, upload_failed, send_failed, ...).",
            ["channel", "outcome"],
            registry=r,
        )
        self.token_refreshes = Counter(
            "alertbridge_wecom_token_refreshes_total",
            "Access tokens fetched from WeCom.",
            ["corp_id"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "alertbridge_delivery_latency_seconds",
            "From accepting a notification to WeCom accepting its last message.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.deferrals = Counter(
            "alertbridge_rate_limit_deferrals_total",
            "Deliveries held back because a recipient's WeCom rate budget was spent.",
            ["receiver"],
            registry=r,
        )
        self.digests = Counter(
            "alertbridge_digests_sent_total",
            "Digest messages sent (several notifications merged under a rate limit).",
            ["receiver"],
            registry=r,
        )
        self.dead_letters = Counter(
            "alertbridge_deliveries_dead_total",
            "Deliveries given up on, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.callbacks = Counter(
            "alertbridge_callback_requests_total",
            "WeCom callback requests by outcome (ok, bad_signature, replayed, ...).",
            ["outcome"],
            registry=r,
        )
        self.callback_events = Counter(
            "alertbridge_callback_events_total",
            "WeCom callback events by type (subscribe, enter_agent, click, ...; unknown types as other).",
            ["event"],
            registry=r,
        )
        self.commands = Counter(
            "alertbridge_commands_total",
            "Commands from WeCom by name and outcome.",
            ["command", "outcome"],
            registry=r,
        )
        self.command_replies = Counter(
            "alertbridge_command_replies_total",
            "Replies to WeCom commands: passive (in the callback response), sent, failed, "
            "or not sent because the member's WeCom rate budget (shared with alerts) was spent.",
            ["outcome"],
            registry=r,
        )
        self.silences_created = Counter(
            "alertbridge_silences_created_total", "Silences created, by silencer.", ["silencer"], registry=r
        )
        self.silences_expired = Counter(
            "alertbridge_silences_expired_total", "Silences expired, by silencer.", ["silencer"], registry=r
        )
        self.reloads = Counter(
            "alertbridge_config_reloads_total", "Configuration reloads by outcome.", ["outcome"], registry=r
        )
        self.reload_ok = Gauge(
            "alertbridge_config_last_reload_successful", "1 if the last reload succeeded.", registry=r
        )
        self.reload_ok.set(1)
        self.group_commits = Counter(
            "alertbridge_outbox_group_commits_total",
            "Transactions that stored a batch of accepted webhooks (group commit); accepted "
            "webhooks per commit is how well bursts share one fsync.",
            registry=r,
        )
        self.lease_takeovers = Counter(
            "alertbridge_outbox_lease_takeovers_total",
            "Deliveries this replica claimed whose previous lease, held by another replica, had "
            "expired: that replica died or stalled mid-work. Always 0 on SQLite (one process).",
            registry=r,
        )
        # Created on the first observe_pool: absent for a store without a pool.
        self._pool_in_use: Gauge | None = None
        self._pool_idle: Gauge | None = None
        self.outbox_pending = Gauge(
            "alertbridge_outbox_pending", "Deliveries waiting to be sent.", registry=r
        )
        self.outbox_dead = Gauge(
            "alertbridge_outbox_dead_letters", "Deliveries in the dead-letter state.", registry=r
        )
        self.outbox_oldest = Gauge(
            "alertbridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending delivery; 0 when none.",
            registry=r,
        )

    def observe_outbox(self, pending: int, dead: int, oldest: datetime | None, now: datetime) -> None:
        """Set the outbox gauges from a store reading taken at scrape time."""
        self.outbox_pending.set(pending)
        self.outbox_dead.set(dead)
        self.outbox_oldest.set(max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)

    def observe_pool(self, in_use: int, idle: int) -> None:
        """Set the database pool gauges from a reading taken at scrape time."""
        if self._pool_in_use is None or self._pool_idle is None:
            self._pool_in_use = Gauge(
                "alertbridge_store_pool_connections_in_use",
                "Database connections of this replica's pool lent out right now (PostgreSQL).",
                registry=self.registry,
            )
            self._pool_idle = Gauge(
                "alertbridge_store_pool_connections_idle",
                "Database connections of this replica's pool open and free right now (PostgreSQL).",
                registry=self.registry,
            )
        self._pool_in_use.set(in_use)
        self._pool_idle.set(idle)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
