"""Run-failure alerts: every failed run is logged, and posted to ALERT_WEBHOOK_URL when set.

The webhook gets a small JSON body (Slack/Teams-compatible ``text``); the URL may embed a token,
so it is never logged. Posting is best effort: an alert must never fail the sensor. Redirects are
not followed: the alert (and whatever the URL carries) goes only to the host that was configured.
"""

import os

import dagster as dg
import requests

ALERT_TIMEOUT_S = 10


def alert_text(job_name: str, run_id: str, error: str | None) -> str:
    reason = (error or "unknown error").strip().splitlines()[0][:300]
    return f"Dagster run failed: job {job_name}, run {run_id}: {reason}"


def post_alert(url: str, text: str) -> bool:
    try:
        response = requests.post(
            url, json={"text": text}, timeout=ALERT_TIMEOUT_S, allow_redirects=False
        )
        return response.ok and not response.is_redirect
    except requests.RequestException:
        return False


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="Logs every failed run and posts it to ALERT_WEBHOOK_URL when set.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    error = context.failure_event.message if context.failure_event else None
    text = alert_text(context.dagster_run.job_name, context.dagster_run.run_id, error)
    context.log.error(text)
    url = os.environ.get("ALERT_WEBHOOK_URL")
    if url and not post_alert(url, text):
        context.log.warning("the alert webhook did not accept the message")
