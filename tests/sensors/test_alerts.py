import dagster as dg
from pytest_httpserver import HTTPServer
from werkzeug import Response

from sensors.alerts import alert_text, post_alert, run_failure_alert_sensor


def test_alert_text_names_job_run_and_first_line_of_the_error():
    text = alert_text("esios_job", "abc123", "ApiError: ESIOS answered HTTP 500\ntraceback...")
    assert (
        text == "Dagster run failed: job esios_job, run abc123: ApiError: ESIOS answered HTTP 500"
    )
    assert alert_text("j", "r", None).endswith("unknown error")


def test_post_alert_sends_json_text_and_survives_a_dead_webhook(httpserver):
    received = []

    def handler(request):
        received.append(request.get_json())
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    assert post_alert(httpserver.url_for("/hook"), "boom") is True
    assert received == [{"text": "boom"}]
    assert post_alert("http://127.0.0.1:1/hook", "boom") is False


def test_a_webhook_redirect_is_not_followed(httpserver):
    """A redirect to another host gets neither the alert nor a second POST; it counts as refused."""
    elsewhere = HTTPServer(host="127.0.0.1", port=0)
    elsewhere.expect_request("/steal").respond_with_data("ok")
    elsewhere.start()
    try:
        httpserver.expect_request("/hook", method="POST").respond_with_response(
            Response(status=307, headers={"Location": elsewhere.url_for("/steal")})
        )
        assert post_alert(httpserver.url_for("/hook"), "boom") is False
        assert elsewhere.log == []
    finally:
        elsewhere.clear()
        elsewhere.stop()


def test_the_alert_sensor_is_on_by_default():
    assert run_failure_alert_sensor.default_status == dg.DefaultSensorStatus.RUNNING
