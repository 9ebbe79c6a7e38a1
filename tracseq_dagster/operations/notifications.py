"""Alerts to the lab: a stable key per alert, dedupe against what was sent, a rate limit, retries, never raising.

An :class:`Alert` names what it is about (``kind`` + ``about``); its ``key`` is a hash of those two,
so the same anomaly, check failure or freezer risk collected again on the next run has the same
key and is not sent twice. What was sent lives in the lake's ALERTS table
(:mod:`tracseq_dagster.operations.outputs`): one row per alert and channel attempted, with
``delivered`` and the error. :func:`deliver` reads that history and:

* skips an alert already delivered on a channel (and one already recorded with no channel);
* sends at most ``rate_limit_per_hour`` alerts per channel in any hour (counting the history), and
  records the rest as undelivered "rate limited", so they go out on a later run;
* retries a failed delivery (connection error, timeout, HTTP 5xx or 429) with exponential backoff,
  then records it undelivered with the error; a 4xx other than 429 is not retried;
* never raises: a receiver that is down costs the run a few seconds, not its result.

Two channels: a generic JSON webhook (the alert as a JSON object, POSTed with httpx) and a Slack
incoming webhook (Block Kit JSON through ``slack_sdk.webhook.WebhookClient``, the client the
dagster-slack integration is built on; dagster-slack's own resource posts with a bot token through
``chat.postMessage``, which an incoming-webhook URL does not have).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import pandas as pd
from slack_sdk.webhook import WebhookClient

#: Columns of the ALERTS table, in order.
ALERT_COLUMNS: tuple[str, ...] = (
    "key",
    "kind",
    "severity",
    "subject",
    "message",
    "created_at",
    "delivered",
    "channel",
    "attempts",
    "error",
)
#: Days of alert history the ALERTS table keeps (dedupe and the weekly report look back far less).
HISTORY_DAYS = 180.0
#: The channel name recorded when no channel is configured: alerts are recorded, not sent.
NO_CHANNEL = "none"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SLACK_HEADER_LIMIT = 150  # characters of a Block Kit header


@dataclass(frozen=True)
class Alert:
    """One thing the lab should look at. ``about`` identifies it (e.g. ``sample:TS-2026-000123``)."""

    kind: str
    about: str
    subject: str
    message: str
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable across runs: the same kind and subject of the alert give the same key."""
        return hashlib.sha256(f"{self.kind}\x1f{self.about}".encode()).hexdigest()[:20]

    def as_json(self, created_at: pd.Timestamp) -> dict[str, Any]:
        """The generic webhook's body."""
        return {
            "key": self.key,
            "kind": self.kind,
            "about": self.about,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "created_at": created_at.isoformat(),
            "details": self.details,
        }


class DeliveryError(Exception):
    """A delivery that failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Channel(Protocol):
    name: str

    def send(self, alert: Alert, created_at: pd.Timestamp) -> None:
        """Deliver one alert or raise :class:`DeliveryError`."""


def _status_error(status: int, body: str) -> DeliveryError:
    return DeliveryError(f"HTTP {status}: {' '.join(body.split())[:200]}", retry=status in RETRY_STATUS)


@dataclass
class WebhookChannel:
    """A generic JSON webhook: POST the alert as JSON; any 2xx is delivered."""

    url: str
    timeout_s: float = 5.0
    name: str = "webhook"

    def send(self, alert: Alert, created_at: pd.Timestamp) -> None:
        try:
            response = httpx.post(self.url, json=alert.as_json(created_at), timeout=self.timeout_s)
        except httpx.HTTPError as error:
            raise DeliveryError(f"{type(error).__name__}: {error}", retry=True) from error
        if not 200 <= response.status_code < 300:
            raise _status_error(response.status_code, response.text)


def slack_blocks(alert: Alert) -> list[dict[str, Any]]:
    """Block Kit blocks of an alert: a header, the message, and a context line with kind and key."""
    return [
        {"type": "header", "text": {"type": "plain_text", "text": alert.subject[:SLACK_HEADER_LIMIT]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": alert.message[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{alert.severity} · {alert.kind} · key `{alert.key}`"}]},
    ]


@dataclass
class SlackChannel:
    """A Slack incoming webhook (``https://hooks.slack.com/services/...``): text plus Block Kit blocks."""

    url: str
    timeout_s: float = 5.0
    name: str = "slack"

    def send(self, alert: Alert, created_at: pd.Timestamp) -> None:
        # No retry handlers of slack_sdk's own: deliver() retries every channel by one policy.
        client = WebhookClient(self.url, timeout=max(1, round(self.timeout_s)), retry_handlers=[])
        try:
            response = client.send(text=f"{alert.subject}: {alert.message}"[:3000], blocks=slack_blocks(alert))
        except OSError as error:  # URLError, timeouts and refused connections are OSErrors
            raise DeliveryError(f"{type(error).__name__}: {error}", retry=True) from error
        if response.status_code != 200:
            raise _status_error(response.status_code, str(response.body))


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: attempts per alert and channel, backoff, alerts per channel per hour."""

    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    rate_limit_per_hour: int = 30


def empty_alerts() -> pd.DataFrame:
    """An ALERTS table with no row (the first run's history)."""
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in ALERT_COLUMNS})
    frame["created_at"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["delivered"] = pd.Series(dtype="bool")
    frame["attempts"] = pd.Series(dtype="int64")
    return frame


def _attempt(
    channel: Channel, alert: Alert, now: pd.Timestamp, policy: DeliveryPolicy, sleep: Callable[[float], None]
) -> tuple[int, str | None]:
    """Try, retry with backoff; (attempts made, None when delivered else the last error)."""
    error: str | None = None
    for attempt in range(1, policy.retries + 2):
        try:
            channel.send(alert, now)
            return attempt, None
        except DeliveryError as failure:
            error = str(failure)
            if not failure.retry:
                return attempt, error
        except Exception as failure:  # a channel must never break the run: record whatever it was
            return attempt, f"{type(failure).__name__}: {failure}"
        if attempt <= policy.retries:
            sleep(min(policy.backoff_s * 2 ** (attempt - 1), policy.max_backoff_s))
    return policy.retries + 1, error


def deliver(
    alerts: Iterable[Alert],
    channels: Sequence[Channel],
    history: pd.DataFrame | None = None,
    *,
    policy: DeliveryPolicy = DeliveryPolicy(),
    now: pd.Timestamp | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Send the alerts not sent before; return the new ALERTS rows (one per alert and channel tried).

    Never raises for a delivery problem. With no channel, each new alert is recorded once with
    channel ``none`` and ``delivered`` False.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    history = empty_alerts() if history is None or history.empty else history
    ok = history["delivered"].astype(bool)
    done = set(zip(history.loc[ok, "key"], history.loc[ok, "channel"], strict=True))
    recorded_unsent = set(history.loc[history["channel"] == NO_CHANNEL, "key"])
    recent = history[ok & (pd.to_datetime(history["created_at"], utc=True) > now - pd.Timedelta(hours=1))]
    sent_this_hour = recent.groupby("channel").size().to_dict() if len(recent) else {}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for alert in alerts:
        if alert.key in seen:  # the same alert twice in one batch
            continue
        seen.add(alert.key)
        base = {
            "key": alert.key,
            "kind": alert.kind,
            "severity": alert.severity,
            "subject": alert.subject,
            "message": alert.message,
            "created_at": now,
        }
        if not channels:
            if alert.key not in recorded_unsent:
                rows.append({**base, "delivered": False, "channel": NO_CHANNEL, "attempts": 0,
                             "error": "no channel configured (TRACSEQ_ALERT_WEBHOOK_URL, TRACSEQ_SLACK_WEBHOOK_URL): recorded, not sent"})  # fmt: skip
            continue
        for channel in channels:
            if (alert.key, channel.name) in done:
                continue
            if sent_this_hour.get(channel.name, 0) >= policy.rate_limit_per_hour:
                rows.append({**base, "delivered": False, "channel": channel.name, "attempts": 0,
                             "error": f"rate limited: {policy.rate_limit_per_hour} alerts per hour on {channel.name}; sent on a later run"})  # fmt: skip
                continue
            attempts, error = _attempt(channel, alert, now, policy, sleep)
            if error is None:
                sent_this_hour[channel.name] = sent_this_hour.get(channel.name, 0) + 1
            rows.append({**base, "delivered": error is None, "channel": channel.name, "attempts": attempts, "error": error})
    if not rows:
        return empty_alerts()
    out = pd.DataFrame(rows, columns=list(ALERT_COLUMNS))
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
    out["delivered"] = out["delivered"].astype(bool)
    out["attempts"] = out["attempts"].astype("int64")
    for column in ("key", "kind", "severity", "subject", "message", "channel", "error"):
        out[column] = out[column].astype("string")
    return out


def append_history(
    history: pd.DataFrame | None, new_rows: pd.DataFrame, *, keep_days: float = HISTORY_DAYS, now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The ALERTS table after a run: the history of the last ``keep_days`` days plus this run's rows.

    The table is written whole every hour, so it must not grow without end. What it is read for
    (an alert not sent twice, the weekly report's counts) looks back days, not years: an older
    alert that fires again is news again and is sent again.
    """
    if history is None or history.empty:
        return new_rows.reset_index(drop=True)
    moment = now if now is not None else pd.Timestamp.now(tz="UTC")
    created = pd.to_datetime(history["created_at"], utc=True, errors="coerce")
    kept = history[created.isna() | (created >= moment - pd.Timedelta(days=keep_days))]
    if new_rows.empty:
        return kept[list(ALERT_COLUMNS)].reset_index(drop=True)
    return pd.concat([kept[list(ALERT_COLUMNS)], new_rows], ignore_index=True)
