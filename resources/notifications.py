"""Where alerts go: a generic JSON webhook and a Slack incoming webhook, from environment variables."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from tracseq_dagster.operations.notifications import Channel, DeliveryPolicy, SlackChannel, WebhookChannel

WEBHOOK_ENV = "TRACSEQ_ALERT_WEBHOOK_URL"
SLACK_ENV = "TRACSEQ_SLACK_WEBHOOK_URL"
RATE_LIMIT_ENV = "TRACSEQ_ALERT_RATE_LIMIT_PER_HOUR"


class NotificationsResource(dg.ConfigurableResource):
    """The lab's alert channels. Neither URL set: alerts are recorded in ALERTS, not sent (the metadata says so)."""

    webhook_url: str | None = Field(default=None, description=f"Generic JSON webhook ({WEBHOOK_ENV})")
    slack_webhook_url: str | None = Field(default=None, description=f"Slack incoming webhook ({SLACK_ENV})")
    rate_limit_per_hour: int = Field(default=DeliveryPolicy.rate_limit_per_hour, description=f"Per channel ({RATE_LIMIT_ENV})")
    retries: int = DeliveryPolicy.retries
    backoff_s: float = DeliveryPolicy.backoff_s
    timeout_s: float = 5.0

    @classmethod
    def from_env(cls) -> NotificationsResource:
        """Configured from the environment; URLs as EnvVar, so a token in a URL stays out of the UI."""
        return cls(
            webhook_url=dg.EnvVar(WEBHOOK_ENV) if os.getenv(WEBHOOK_ENV) else None,
            slack_webhook_url=dg.EnvVar(SLACK_ENV) if os.getenv(SLACK_ENV) else None,
            rate_limit_per_hour=int(os.getenv(RATE_LIMIT_ENV) or DeliveryPolicy.rate_limit_per_hour),
        )

    def channels(self) -> list[Channel]:
        out: list[Channel] = []
        if self.webhook_url:
            out.append(WebhookChannel(self.webhook_url, timeout_s=self.timeout_s))
        if self.slack_webhook_url:
            out.append(SlackChannel(self.slack_webhook_url, timeout_s=self.timeout_s))
        return out

    def policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(retries=self.retries, backoff_s=self.backoff_s, rate_limit_per_hour=self.rate_limit_per_hour)
