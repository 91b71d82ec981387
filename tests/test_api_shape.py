"""The API's shape: one error table, typed outcomes, typed dependencies, no SQL in api/, every
flow state an enum in the OpenAPI schema. No database or Temporal needed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from api.app import create_app
from api.errors import ERRORS, ProblemError, problem_body
from api.flowstart import outcome_code, refusal
from contracts.errors import ErrorCode
from contracts.flow import FlowState

API = Path(__file__).resolve().parent.parent / "api"


def test_every_error_code_has_a_status_and_title() -> None:
    assert set(ERRORS) == set(ErrorCode)
    for code, (status, title) in ERRORS.items():
        assert 400 <= status < 600, code
        assert title and title[0].isupper() and not title.endswith("."), code


@pytest.mark.parametrize(("code", "status"), [
    (ErrorCode.INSUFFICIENT_FUNDS, 402), (ErrorCode.NOT_REFUNDABLE, 409),
    (ErrorCode.CAMPAIGN_CLOSED, 409), (ErrorCode.DECISION_REFUSED, 409),
    (ErrorCode.REFUND_EXCEEDS_PAID, 422), (ErrorCode.OVER_LIMIT, 422),
    (ErrorCode.EXCEEDS_TARGET, 422), (ErrorCode.TEMPORAL_UNAVAILABLE, 503),
    (ErrorCode.DB_UNAVAILABLE, 503),
])
def test_business_codes_map_to_their_status(code: ErrorCode, status: int) -> None:
    body = problem_body(code, "why", flow_id="f")
    assert (body["status"], body["code"], body["title"]) == (status, code.value, ERRORS[code][1])
    assert body["type"].endswith("/" + code.value) and body["flow_id"] == "f"
    assert ProblemError(code, "why").status == status


def test_a_flow_outcome_maps_through_its_code() -> None:
    assert outcome_code("over_limit", ErrorCode.PAYMENT_FAILED) == ErrorCode.OVER_LIMIT
    assert outcome_code("not_a_code", ErrorCode.PAYMENT_FAILED) == ErrorCode.PAYMENT_FAILED
    assert outcome_code(None, ErrorCode.REFUND_FAILED) == ErrorCode.REFUND_FAILED
    answer = refusal("campaign_closed", "the campaign is closed", ErrorCode.EXCEEDS_TARGET)
    assert (answer.status, answer.body["code"], answer.final) == (409, "campaign_closed", True)


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(API.glob("*.py"))]


def test_api_holds_no_sql_and_no_app_state_outside_its_dependencies() -> None:
    for path, tree in _modules():
        source = path.read_text()
        assert "from sqlalchemy import text" not in source, path.name
        assert "session.commit()" not in source or path.name in ("deps.py", "flowstart.py"), \
            path.name
        if path.name not in ("app.py", "deps.py", "metrics.py", "telemetry.py"):
            assert ".app.state" not in source, path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("sqlalchemy.sql"), path.name


def test_api_files_and_functions_stay_small() -> None:
    for path, tree in _modules():
        assert len(path.read_text().splitlines()) <= 400, path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                size = node.end_lineno - node.lineno + 1
                assert size <= 40, f"{path.name}:{node.name} has {size} lines"


def test_status_endpoints_list_every_flow_state() -> None:
    schema = create_app().openapi()
    states = schema["components"]["schemas"]["FlowState"]["enum"]
    assert set(states) == {s.value for s in FlowState}
    codes = schema["components"]["schemas"]["ErrorCode"]["enum"]
    assert set(codes) == {c.value for c in ErrorCode}
    for path in ("/v1/flows/{flow_id}", "/v1/refunds/{flow_id}", "/v1/withdrawals/{flow_id}",
                 "/v1/purchases/{order_id}"):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"].endswith("/FlowStatusView"), path
