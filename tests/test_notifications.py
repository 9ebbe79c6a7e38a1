"""Notifications against a real local HTTP receiver: JSON webhook, Slack payload, dedupe, rate limit, retries."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from resources.notifications import SLACK_ENV, WEBHOOK_ENV, NotificationsResource
from tracseq_dagster.operations.notifications import (
    ALERT_COLUMNS,
    NO_CHANNEL,
    Alert,
    DeliveryPolicy,
    SlackChannel,
    WebhookChannel,
    append_history,
    deliver,
)

NOW = pd.Timestamp("2026-12-06 12:00", tz="UTC")


class Receiver:
    """An HTTP server in a thread that records every POST; ``status[path]`` sets the answer (200 by default)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.status: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, json.loads(body)))
                code = receiver.status.get(self.path, 200)
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"receiver error")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def closed_port_url() -> str:
    """A local address where nothing listens (a receiver that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def alert(i: int = 1, **changes: object) -> Alert:
    fields = {
        "kind": "anomaly",
        "about": f"sample:TS-2026-{i:06d}",
        "subject": f"Unusual sample TS-2026-{i:06d}",
        "message": "storage_temp_deviation_c = -95 (reference median 0)",
    }
    return Alert(**{**fields, **changes})


def no_sleep(_: float) -> None:
    pass


def test_webhook_receives_the_alert_as_json(receiver: Receiver) -> None:
    rows = deliver([alert(1)], [WebhookChannel(receiver.url("/hook"))], now=NOW, sleep=no_sleep)
    [body] = receiver.bodies("/hook")
    assert body["key"] == alert(1).key
    assert body["kind"] == "anomaly" and body["subject"] == "Unusual sample TS-2026-000001"
    assert body["message"].startswith("storage_temp_deviation_c") and body["created_at"] == NOW.isoformat()
    assert list(rows.columns) == list(ALERT_COLUMNS)
    assert rows["delivered"].tolist() == [True] and rows["attempts"].tolist() == [1] and rows["error"].isna().all()


def test_the_same_anomaly_is_not_sent_twice(receiver: Receiver) -> None:
    channel = WebhookChannel(receiver.url("/hook"))
    first = deliver([alert(1), alert(2), alert(1)], [channel], now=NOW, sleep=no_sleep)  # a duplicate in the batch too
    history = append_history(None, first)
    second = deliver([alert(1), alert(2), alert(3)], [channel], history, now=NOW + pd.Timedelta(hours=1), sleep=no_sleep)
    assert len(first) == 2 and second["key"].tolist() == [alert(3).key]
    assert [b["key"] for b in receiver.bodies("/hook")] == [alert(1).key, alert(2).key, alert(3).key]


def test_alert_key_is_stable_and_names_kind_and_subject() -> None:
    assert alert(1).key == alert(1, subject="reworded", message="other text").key
    assert alert(1).key != alert(2).key
    assert alert(1).key != alert(1, kind="drift").key


def test_rate_limit_per_channel_and_hour(receiver: Receiver) -> None:
    channel = WebhookChannel(receiver.url("/hook"))
    policy = DeliveryPolicy(rate_limit_per_hour=2)
    alerts = [alert(i) for i in range(1, 6)]
    first = deliver(alerts, [channel], policy=policy, now=NOW, sleep=no_sleep)
    assert first["delivered"].tolist() == [True, True, False, False, False]
    assert first.loc[~first["delivered"], "error"].str.startswith("rate limited").all()
    assert len(receiver.bodies("/hook")) == 2
    history = append_history(None, first)
    # Within the same hour the limit is still used up; an hour later the next two go out.
    assert (
        deliver(alerts, [channel], history, policy=policy, now=NOW + pd.Timedelta(minutes=30), sleep=no_sleep)["delivered"].sum()
        == 0
    )
    later = deliver(alerts, [channel], history, policy=policy, now=NOW + pd.Timedelta(minutes=61), sleep=no_sleep)
    assert later["delivered"].tolist() == [True, True, False]
    assert len(receiver.bodies("/hook")) == 4


def test_receiver_down_is_retried_with_backoff_then_recorded_undelivered() -> None:
    waits: list[float] = []
    policy = DeliveryPolicy(retries=3, backoff_s=0.5)
    rows = deliver([alert(1)], [WebhookChannel(closed_port_url(), timeout_s=1.0)], policy=policy, now=NOW, sleep=waits.append)
    assert rows["delivered"].tolist() == [False]
    assert rows["attempts"].tolist() == [4] and waits == [0.5, 1.0, 2.0]
    assert "ConnectError" in rows["error"].iloc[0]
    # Undelivered is not "sent": the next run tries again.
    history = append_history(None, rows)
    again = deliver(
        [alert(1)], [WebhookChannel(closed_port_url(), timeout_s=1.0)], history, policy=policy, now=NOW, sleep=no_sleep
    )
    assert len(again) == 1 and not again["delivered"].iloc[0]


def test_server_error_is_retried_and_client_error_is_not(receiver: Receiver) -> None:
    receiver.status = {"/busy": 503, "/gone": 404}
    policy = DeliveryPolicy(retries=2, backoff_s=0.01)
    busy = deliver([alert(1)], [WebhookChannel(receiver.url("/busy"))], policy=policy, now=NOW, sleep=no_sleep)
    gone = deliver([alert(1)], [WebhookChannel(receiver.url("/gone"))], policy=policy, now=NOW, sleep=no_sleep)
    assert busy["attempts"].tolist() == [3] and "HTTP 503" in busy["error"].iloc[0]
    assert gone["attempts"].tolist() == [1] and "HTTP 404" in gone["error"].iloc[0]
    assert len(receiver.bodies("/busy")) == 3 and len(receiver.bodies("/gone")) == 1


def test_slack_payload_shape(receiver: Receiver) -> None:
    long_subject = "Freezer FRZ-03: " + "x" * 300
    rows = deliver([alert(7, subject=long_subject)], [SlackChannel(receiver.url("/slack"))], now=NOW, sleep=no_sleep)
    [body] = receiver.bodies("/slack")
    assert rows["delivered"].tolist() == [True] and rows["channel"].tolist() == ["slack"]
    assert body["text"].startswith("Freezer FRZ-03: ")
    header, section, context = body["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text" and len(header["text"]["text"]) == 150
    assert (
        section["type"] == "section"
        and section["text"]["type"] == "mrkdwn"
        and "storage_temp_deviation_c" in section["text"]["text"]
    )
    assert context["type"] == "context" and alert(7).key in context["elements"][0]["text"]


def test_slack_receiver_down_is_recorded_not_raised() -> None:
    rows = deliver(
        [alert(1)], [SlackChannel(closed_port_url(), timeout_s=1.0)], policy=DeliveryPolicy(retries=1), now=NOW, sleep=no_sleep
    )
    assert rows["delivered"].tolist() == [False] and rows["attempts"].tolist() == [2]
    assert "refused" in rows["error"].iloc[0].lower()


def test_both_channels_each_get_the_alert_and_dedupe_per_channel(receiver: Receiver) -> None:
    receiver.status = {"/slack": 500}
    channels = [WebhookChannel(receiver.url("/hook")), SlackChannel(receiver.url("/slack"))]
    first = deliver([alert(1)], channels, policy=DeliveryPolicy(retries=0), now=NOW, sleep=no_sleep)
    assert first.set_index("channel")["delivered"].to_dict() == {"webhook": True, "slack": False}
    receiver.status = {}
    second = deliver([alert(1)], channels, append_history(None, first), now=NOW, sleep=no_sleep)
    assert second["channel"].tolist() == ["slack"] and second["delivered"].tolist() == [True]
    assert len(receiver.bodies("/hook")) == 1


def test_no_channel_records_once_and_sends_nothing() -> None:
    first = deliver([alert(1), alert(2)], [], now=NOW)
    assert first["channel"].tolist() == [NO_CHANNEL, NO_CHANNEL] and not first["delivered"].any()
    assert first["error"].str.contains("TRACSEQ_ALERT_WEBHOOK_URL").all()
    assert deliver([alert(1), alert(2)], [], append_history(None, first), now=NOW).empty


def test_a_channel_that_raises_anything_is_recorded_not_raised() -> None:
    class Broken:
        name = "broken"

        def send(self, alert: Alert, created_at: pd.Timestamp) -> None:
            raise RuntimeError("library bug")

    rows = deliver([alert(1)], [Broken()], now=NOW, sleep=no_sleep)
    assert rows["delivered"].tolist() == [False] and rows["error"].tolist() == ["RuntimeError: library bug"]


def test_resource_channels_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    monkeypatch.delenv(SLACK_ENV, raising=False)
    assert NotificationsResource.from_env().channels() == []
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/hook")
    monkeypatch.setenv(SLACK_ENV, "http://127.0.0.1:9/slack")
    monkeypatch.setenv("TRACSEQ_ALERT_RATE_LIMIT_PER_HOUR", "7")
    resource = NotificationsResource(
        webhook_url="http://127.0.0.1:9/hook", slack_webhook_url="http://127.0.0.1:9/slack", rate_limit_per_hour=7
    )
    assert [c.name for c in resource.channels()] == ["webhook", "slack"]
    assert resource.policy().rate_limit_per_hour == 7
    configured = NotificationsResource.from_env()
    assert configured.rate_limit_per_hour == 7


def test_the_alert_history_keeps_its_last_days_only(receiver: Receiver) -> None:
    channel = WebhookChannel(receiver.url("/hook"))
    old = deliver([alert(1)], [channel], now=NOW - pd.Timedelta(days=200), sleep=no_sleep)
    recent = deliver([alert(2)], [channel], now=NOW - pd.Timedelta(days=10), sleep=no_sleep)
    history = append_history(append_history(None, old), recent, now=NOW)
    assert history["key"].tolist() == [alert(2).key]  # 200 days old: gone
    history = append_history(history, deliver([alert(3)], [channel], history, now=NOW, sleep=no_sleep), now=NOW)
    assert history["key"].tolist() == [alert(2).key, alert(3).key]
    assert deliver([alert(2)], [channel], history, now=NOW, sleep=no_sleep).empty  # kept: still not sent twice
    assert deliver([alert(1)], [channel], history, now=NOW, sleep=no_sleep)["key"].tolist() == [alert(1).key]  # news again
