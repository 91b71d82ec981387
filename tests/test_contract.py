"""The OpenAPI document is the contract, and schemathesis proves it: every operation of the real
API (the session's PostgreSQL, Temporal dev server, worker and stand-in) gets generated valid
and invalid requests under a client key and under an admin key, and every response must keep
the document: no 5xx, only documented status codes, bodies and content types as declared, and
every other schemathesis check.

Budget: ``EXAMPLES`` cases per operation and generation mode, derandomized (the same cases on
every run). ``WALLETFLOW_SCHEMATHESIS=long`` runs ``LONG_EXAMPLES`` with a random seed (printed,
and replayed with ``WALLETFLOW_SCHEMATHESIS_SEED=<seed>``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup

from api.app import create_app
from api.openapi_routes import SUCCESS
from api.schemas import AMOUNT_PATTERN
from contracts.money import MAX_MINOR_UNITS, MoneyError, parse_amount
from tests.support import LiveServer, create_tenant

LONG = os.environ.get("WALLETFLOW_SCHEMATHESIS", "") == "long"
EXAMPLES = 6
LONG_EXAMPLES = 150
SEED = os.environ.get("WALLETFLOW_SCHEMATHESIS_SEED")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

# Failures that are behaviour bugs being fixed in the route bodies, not in the contract:
# (operation, check) → why. Keep it narrow; an entry is dropped as soon as its fix lands.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

CONFIG = {
    "generation": {"with-security-parameters": False},
    "checks": {"positive_data_acceptance": {
        # Schema-valid requests can still be refused for business reasons the schema cannot
        # express (an unknown user, too little money, a currency with fewer decimals): those
        # answer 402/404/409/422 with a business code. `valid_data_is_not_malformed` below
        # keeps the strict half: a schema-valid request is never malformed.
        "expected-statuses": ["2xx", "400", "401", "402", "403", "404", "409", "410", "422",
                              "503"]}},
}
# Codes that say the request itself is malformed. A route's own cross-field rule (e.g. the
# rewards tiers' order) is a validation_error without per-field `errors`, described in words.
MALFORMED = {"malformed_json", "unsupported_media_type", "bad_request",
             "idempotency_key_missing", "idempotency_key_invalid"}


@dataclass
class Tally:
    """What one run saw: operations, cases, statuses, and failures by (operation, check)."""

    operations: int = 0
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    unsatisfiable: list[str] = field(default_factory=list)

    def fail(self, label: str, check: str, text: str) -> None:
        self.failures[label, check] += 1
        self.examples.setdefault((label, check), text[:1500])

    def by_check(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (_, check), n in self.failures.items():
            counts[check] += n
        return counts

    def summary(self, role: str) -> str:
        lines = [f"schemathesis [{role}]: {self.operations} operations, {self.cases} cases, "
                 f"{sum(self.failures.values())} failures; statuses "
                 f"{dict(sorted(self.statuses.items()))}"]
        lines += [f"  {check}: {n}" for check, n in self.by_check().most_common()]
        lines += [f"  nothing to generate: {', '.join(self.unsatisfiable)}"]
        lines += [f"  - {label} [{check}] x{n}" for (label, check), n in
                  sorted(self.failures.items())]
        return "\n".join(lines)


def _check_name(failure: Failure) -> str:
    if type(failure).checks:
        return type(failure).checks[0]
    named = re.search(r"`(\w+)`", failure.title or "")  # a custom check names itself
    return named.group(1) if named else type(failure).__name__


@dataclass
class Exerciser:
    """Sends one generated case with the caller's key and a fresh Idempotency-Key, and tallies
    what the checks say."""

    base_url: str
    token: str
    user_id: str
    tally: Tally
    keys: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self, case: Any, positive: bool) -> None:
        key = case.headers.get("Idempotency-Key") if case.headers else None
        if isinstance(key, str) and KEY_PATTERN.match(key.strip().strip('"')):
            case.headers["Idempotency-Key"] = f"contract-{next(self.keys)}"
        if positive:  # let valid requests reach the tenant's known user, so flows start
            if isinstance(case.body, dict) and "user_id" in case.body:
                case.body["user_id"] = self.user_id
            if case.path_parameters and "user_id" in case.path_parameters:
                case.path_parameters["user_id"] = self.user_id

    def __call__(self, case: Any, positive: bool) -> None:
        self.prepare(case, positive)
        headers = {"Authorization": f"Bearer {self.token}"}
        label = case.operation.label
        response = case.call(base_url=self.base_url, headers=headers, timeout=60)
        self.tally.cases += 1
        self.tally.statuses[response.status_code] += 1
        try:
            case.validate_response(
                response, headers=headers,
                additional_checks=[valid_data_is_not_malformed],
                transport_kwargs={"base_url": self.base_url, "headers": headers, "timeout": 60})
        except FailureGroup as group:
            for failure in group.exceptions:
                self.tally.fail(label, _check_name(failure), str(group))
        except Failure as failure:
            self.tally.fail(label, _check_name(failure), str(failure))


@schemathesis.check
def valid_data_is_not_malformed(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the document calls valid is never refused as malformed (the document would
    then be looser than the parser)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    if code in MALFORMED or (code == "validation_error" and body.get("errors")):
        raise AssertionError(f"valid data refused as {code}: {response.text[:300]}")
    return None


def _run_mode(operation: Any, mode: GenerationMode, exercise: Exerciser, examples: int,
              run_seed: int | None) -> None:
    positive = mode.is_positive

    @settings(max_examples=examples, derandomize=run_seed is None, database=None,
              deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def each(case: Any) -> None:
        exercise(case, positive)

    try:
        (seed(run_seed)(each) if run_seed is not None else each)()
    except Unsatisfiable:  # nothing to generate (e.g. no input to make invalid)
        exercise.tally.unsatisfiable.append(f"{operation.label} ({mode.value})")


def run_contract(base_url: str, token: str, user_id: str, examples: int,
                 run_seed: int | None) -> Tally:
    """Every operation, positive then negative cases (blocking: run it in a thread while the
    test's event loop serves the API)."""
    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json", config=schemathesis.Config.from_dict(CONFIG))
    tally = Tally()
    exercise = Exerciser(base_url, token, user_id, tally)
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # Err raises: a broken document
        tally.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_mode(operation, mode, exercise, examples, run_seed)
    return tally


# -- the document itself (no server) ----------------------------------------------------------


def document_problems(doc: dict[str, Any]) -> list[str]:
    """What the document fails to say: every answer's schema, errors as problem+json,
    the bearer scheme, Idempotency-Key on flow starts, /metrics as text."""
    problems = []
    schemes = doc.get("components", {}).get("securitySchemes", {})
    if schemes.get("bearerAuth", {}).get("scheme") != "bearer":
        problems.append("no HTTP bearer security scheme")
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            label = f"{method.upper()} {path}"
            for status, response in op["responses"].items():
                content = response.get("content", {})
                if int(status) >= 400 and label != "GET /readyz" and list(content) != [
                        "application/problem+json"]:
                    problems.append(f"{label} {status}: not problem+json")
                if not any(c.get("schema") for c in content.values()):
                    problems.append(f"{label} {status}: no schema")
            statuses = {int(s) for s in op["responses"]}
            if path.startswith("/v1/") and not {401, 400} & statuses:
                problems.append(f"{label}: no 4xx documented")
            if "{" in path and 404 not in statuses:
                problems.append(f"{label}: no 404")
            headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
            if label in FLOW_STARTS and not headers.get("Idempotency-Key", {}).get("required"):
                problems.append(f"{label}: Idempotency-Key not a required header")
            api_key = "`unauthorized`" in op["responses"].get("401", {}).get("description", "")
            if api_key and op.get("security") != [{"bearerAuth": []}]:
                problems.append(f"{label}: authenticated but no security")
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    if list(metrics) != ["text/plain"]:
        problems.append("/metrics is not text/plain")
    if "HTTPValidationError" in str(doc):
        problems.append("FastAPI's HTTPValidationError is still documented")
    return problems


FLOW_STARTS = {"POST /v1/topups", "POST /v1/orders", "POST /v1/orders/{order_id}/refunds",
               "POST /v1/campaigns/{campaign_id}/donations", "POST /v1/withdrawals",
               "POST /v1/purchases", "POST /v1/purchases/{order_id}/cancel",
               "POST /v1/purchases/{order_id}/refunds"}


def test_the_document_says_every_answer() -> None:
    doc = create_app().openapi()
    assert document_problems(doc) == []
    labels = {f"{m.upper()} {p}" for p, ms in doc["paths"].items() for m in ms}
    assert labels == set(SUCCESS), "every operation's success model is in api/openapi.py"
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert problem["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode"}
    refusal = doc["paths"]["/v1/withdrawals"]["post"]["responses"]["402"]
    assert "insufficient_funds" in refusal["description"]
    stripe = doc["paths"]["/v1/webhooks/stripe"]["post"]["responses"]
    assert "401" not in stripe and "signature_invalid" in stripe["400"]["description"]


@given(st.from_regex(AMOUNT_PATTERN, fullmatch=True))
def test_the_amount_pattern_admits_what_parse_amount_accepts(text: str) -> None:
    """A string the pattern admits is a positive decimal: parse_amount takes it unless the
    currency's rules (decimal places, the largest amount) refuse it (422 invalid_amount)."""
    value = Decimal(text)
    assert value > 0
    exponent = value.normalize().as_tuple().exponent
    fits = (isinstance(exponent, int) and exponent >= -2 and value * 100 <= MAX_MINOR_UNITS
            and all(len(part) <= 24 for part in text.split(".")))
    if fits:
        assert parse_amount(text, "EUR") == int(value * 100)
    else:
        with pytest.raises(MoneyError):
            parse_amount(text, "EUR")


@given(st.text(alphabet="0123456789.-+eE_,", max_size=14) | st.decimals().map(str))
def test_parse_amount_accepts_only_what_the_pattern_admits(text: str) -> None:
    try:
        parse_amount(text, "EUR")
    except MoneyError:
        return
    assert re.fullmatch(AMOUNT_PATTERN, text), text


@pytest.mark.parametrize("role", ["client", "admin"])
async def test_every_operation_keeps_the_contract(api: LiveServer, worker: None,
                                                  sessions: Any, role: str) -> None:
    tenant = await create_tenant(sessions, "contract")
    token = tenant.client_key if role == "client" else tenant.admin_key
    examples = LONG_EXAMPLES if LONG else EXAMPLES
    run_seed = int(SEED) if SEED else (random.randrange(2**32) if LONG else None)
    tally = await asyncio.to_thread(run_contract, api.url, token, tenant.user_id, examples,
                                    run_seed)
    print(f"\n{tally.summary(role)}\n  seed: {run_seed or 'derandomized'}")
    unexpected = {k: n for k, n in tally.failures.items() if k not in KNOWN_FAILURES}
    assert not unexpected, "\n\n".join(
        f"{label} [{check}] x{n}\n{tally.examples[label, check]}"
        for (label, check), n in sorted(unexpected.items()))
