"""The aws_rds executor against moto, in-process (`mock_aws`) and as `moto_server`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from runbook_plugins import aws_rds
from support.platform_fixtures import AWS_ENV, rds_instance

from runbook.contract import ExecContext, PlanContext, StepResult
from runbook.load.model import Target


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        rds_instance(None, "app-db")
        yield


def run(config: dict[str, Any], **ctx: Any) -> StepResult:
    return aws_rds.run({"region": "us-east-1", **config}, ExecContext("s", timeout=10, **ctx))


def test_describe_instance_exposes_fields_for_expectations(aws: None) -> None:
    result = run({"describe_instance": {"instance": "app-db"}})
    f = result.fields
    assert (f["status"], f["engine"], f["multi_az"], f["available"]) == (
        "available",
        "postgres",
        True,
        True,
    )
    assert f["endpoint"].endswith(":5432") and f["pending_modifications"] == {}


def test_events_reboot_and_wait_available(aws: None) -> None:
    events = run({"events": {"instance": "app-db", "minutes": 30}})
    assert events.ok and events.fields["count"] >= 1
    reboot = run({"reboot": {"instance": "app-db", "force_failover": True}})
    assert reboot.ok and reboot.fields["instance"] == "app-db"
    waited = run({"wait_available": {"instance": "app-db", "timeout": 5, "interval": 0.1}})
    assert waited.fields["available"] is True


def test_unknown_instance_and_cluster_are_named(aws: None) -> None:
    assert run({"describe_instance": {"instance": "nope"}}).error == (
        "DB instance 'nope' not found in us-east-1"
    )
    assert run({"failover_cluster": {"cluster": "c1"}}).error == (
        "DB cluster 'c1' not found in us-east-1"
    )


def test_missing_credentials_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = run({"describe_instance": {"instance": "app-db"}})
    assert result.error is not None and result.error.startswith("AWS credentials not found")


def test_expired_credentials_are_reported_as_expired(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError
    from runbook_plugins.aws_rds.calls import describe_error

    exc = ClientError({"Error": {"Code": "ExpiredToken", "Message": "expired"}}, "Describe")
    assert "expired" in str(describe_error(exc, "describe_instance", {}, {}))


def test_endpoint_url_from_target_reaches_moto_server(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    rds_instance(moto_url, "srv-db", multi_az=False)
    target = Target("rds", "aws", {"region": "us-east-1", "endpoint_url": moto_url})
    result = aws_rds.run(
        {"target": "rds", "describe_instance": {"instance": "srv-db"}},
        ExecContext("s", timeout=10, target=target),
    )
    assert result.fields["status"] == "available" and result.fields["multi_az"] is False


def test_plan_names_the_api_call_and_arguments() -> None:
    planned = aws_rds.plan(
        {"reboot": {"instance": "db-1", "force_failover": True}, "region": "eu-west-1"},
        PlanContext("s"),
    )
    assert planned.summary == (
        "rds:RebootDBInstance DBInstanceIdentifier=db-1 ForceFailover=True (eu-west-1)"
    )
    assert aws_rds.SPEC.is_read_only({"describe_instance": {"instance": "x"}})
    assert not aws_rds.SPEC.is_read_only({"reboot": {"instance": "x"}})
