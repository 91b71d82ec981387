"""The OpenAPI document is the contract (tests/test_contract.py proves it with schemathesis).

FastAPI's own document is completed here, once, from what each route really does:

- every answer an operation gives has a schema: its success model (``SUCCESS``), and every
  error status one ``Problem`` (application/problem+json) whose ``code`` is the ErrorCode enum;
- the error statuses come from the route's dependencies (an API key → 401/403/429; a JSON
  body → 400/413/415/422; PostgreSQL or Temporal → 503; a path parameter → 404), from starting
  a flow (the ``Idempotency-Key`` header → 400/409/422) and from the route's own refusals
  (``REFUSALS``), each status mapped through the one table in ``api/errors.py``;
- authenticated operations name the HTTP bearer scheme, so "Try it out" in /docs sends a key;
- FastAPI's default 422 body (HTTPValidationError) is replaced by the problem schema.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Literal

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.errors import ERRORS, PROBLEM_JSON
from api.flowstart import KEY_PATTERN
from api.openapi_routes import HEADERS, REFUSALS, SUCCESS, Refusal
from api.views import Problem
from contracts.errors import ErrorCode as E

BEARER = "bearerAuth"
REF = "#/components/schemas/{model}"
TEXT_PLAIN = "text/plain"
STORABLE = "^[^\\x00]*$"  # no NUL (api/boundary.py refuses it with 422)

_EVENT_BODIES = ("POST /v1/webhooks/stripe", "POST /v1/webhooks/shopify",
                 "POST /v1/webhooks/woocommerce")


# -- what a route's dependencies imply ------------------------------------------------------


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _names(route: APIRoute) -> set[str]:
    """The qualified names of everything the route depends on, and the globals its endpoint
    names (a flow-starting endpoint names ``start_flow`` or ``idempotency_key``)."""
    names = {getattr(c, "__qualname__", "") for c in _calls(route.dependant)}
    return names | set(getattr(route.endpoint, "__code__", None) and
                       route.endpoint.__code__.co_names or ())


def body_model(route: APIRoute) -> type[BaseModel] | None:
    """The model a route's ``json_body`` dependency parses (FastAPI cannot see it)."""
    for call in _calls(route.dependant):
        if getattr(call, "__qualname__", "").startswith("json_body."):
            model = inspect.getclosurevars(call).nonlocals.get("model")
            if isinstance(model, type) and issubclass(model, BaseModel):
                return model
    return None


def starts_flow(route: APIRoute) -> bool:
    return bool({"start_flow", "idempotency_key"} & _names(route))


def authenticated(route: APIRoute) -> bool:
    return "_principal" in _names(route)


def implied(route: APIRoute) -> list[Refusal]:
    """The refusals a route's dependencies, parameters and flow start imply."""
    names = _names(route)
    codes: list[Refusal] = [E.VALIDATION_ERROR]  # any input (api/boundary.py, parameters)
    if "_principal" in names:
        codes += [E.UNAUTHORIZED, E.RATE_LIMITED]
    if any(n.startswith("require.") for n in names):
        codes.append(E.INSUFFICIENT_SCOPE)
    if "raw_body" in names:
        codes.append(E.PAYLOAD_TOO_LARGE)
    if any(n.startswith("json_body.") for n in names):
        codes += [E.MALFORMED_JSON, E.UNSUPPORTED_MEDIA_TYPE]
    if starts_flow(route):
        codes += [E.IDEMPOTENCY_KEY_MISSING, E.IDEMPOTENCY_KEY_INVALID, E.FLOW_EXISTS,
                  E.IDEMPOTENCY_IN_PROGRESS, E.IDEMPOTENCY_KEY_REUSED]
    if names & {"db_session", "_sessions"}:
        codes.append(E.DB_UNAVAILABLE)
    if "_temporal" in names:
        codes.append(E.TEMPORAL_UNAVAILABLE)
    return codes


def refusals(route: APIRoute, label: str) -> dict[int, list[E]]:
    """Every error status the operation answers, with the codes it answers it with."""
    own = REFUSALS.get(label, ())
    codes = implied(route) + list(own)
    if route.dependant.path_params and not any(
            _status(c) == 404 for c in own):
        codes.append(E.NOT_FOUND)
    by_status: dict[int, list[E]] = {}
    for refusal in codes:
        code = refusal[0] if isinstance(refusal, tuple) else refusal
        listed = by_status.setdefault(_status(refusal), [])
        if code not in listed:
            listed.append(code)
    return dict(sorted(by_status.items()))


def _status(refusal: Refusal) -> int:
    return refusal[1] if isinstance(refusal, tuple) else ERRORS[refusal][0]


# -- the document ------------------------------------------------------------------------------


def _problem_response(status: int, codes: list[E]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ", ".join(f"`{c.value}`" for c in codes),
        "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="Problem")}}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {
            "required": True, "schema": {"type": "string"}, "description": "the scheme"}}
    if status in (429, 503):
        response["headers"] = {"Retry-After": {
            "required": True, "schema": {"type": "string"}, "description": "seconds"}}
    return response


def _success_response(model: type[BaseModel] | None, status: int) -> dict[str, Any]:
    if model is None:
        return {"description": "Prometheus text exposition",
                "content": {TEXT_PLAIN: {"schema": {"type": "string"}}}}
    description = {200: "OK", 201: "Created", 202: "Accepted: still running"}.get(status, "")
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(
                model=model.__name__)}}}}


def _header(name: str, required: bool, description: str,
            pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "header", "required": required, "schema": schema,
            "description": description}


def _idempotency_header() -> dict[str, Any]:
    return _header("Idempotency-Key", True, "your key for this request (1-128 characters): "
                   "the same key with the same request answers the same; with another "
                   "request, 422", KEY_PATTERN.pattern)


def complete(operation: dict[str, Any], route: APIRoute, label: str) -> None:
    """Fill in one operation: its answers, its security and the headers it reads."""
    if label in SUCCESS:
        model, statuses = SUCCESS[label]
        responses: dict[str, Any] = {str(s): _success_response(model, s) for s in statuses}
    else:  # a route not in SUCCESS yet keeps FastAPI's answer (tests/test_contract.py fails)
        responses = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
    for status, codes in refusals(route, label).items():
        responses.setdefault(str(status), _problem_response(status, codes))
    operation["responses"] = responses
    params = [p for p in operation.get("parameters", []) if p.get("in") != "header"
              or p["name"].lower() not in {"idempotency-key", "authorization"}]
    if starts_flow(route):
        params.append(_idempotency_header())
    params += [_header(*h) for h in HEADERS.get(label, ())]
    storable_text([p["schema"] for p in params if p.get("in") in ("path", "query")])
    if params:
        operation["parameters"] = params
    if authenticated(route):
        operation["security"] = [{BEARER: []}]
    model_ = body_model(route)
    if model_ is not None and "requestBody" not in operation:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(model=model_.__name__)}}}}
    if label in _EVENT_BODIES and "requestBody" not in operation:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "description": "the platform's event, as sent"}}}}


def storable_text(node: Any) -> None:
    """Every free-text string of a request refuses NUL (PostgreSQL cannot store it; the API
    answers 422, ``api/boundary.py``): say so with a pattern where none is given."""
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(node):
            node["pattern"] = STORABLE
        elif isinstance(pattern, str) and pattern != STORABLE and (
                "[^" in pattern or not pattern.endswith("$")):  # a pattern that admits NUL
            node["allOf"] = [{"pattern": STORABLE}]
        for value in node.values():
            storable_text(value)
    elif isinstance(node, list):
        for value in node:
            storable_text(value)


def _components(schema: dict[str, Any], bodies: list[type[BaseModel]]) -> None:
    models: list[type[BaseModel]] = [Problem, *bodies]
    models += [m for m, _ in SUCCESS.values() if m is not None]
    models = list(dict.fromkeys(models))
    modes: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (m, "validation" if m in bodies else "serialization") for m in models]
    _, defs = models_json_schema(modes, ref_template=REF)
    components = schema.setdefault("components", {})
    found = components.setdefault("schemas", {})
    found.pop("HTTPValidationError", None)
    found.pop("ValidationError", None)
    requests = {name: d for name, d in defs.get("$defs", {}).items()
                if name in {m.__name__ for m in bodies}}
    storable_text(requests)
    found.update(defs.get("$defs", {}))
    components["securitySchemes"] = {BEARER: {
        "type": "http", "scheme": "bearer",
        "description": "an API key of the tenant: `Authorization: Bearer wfk_…` (client or "
                       "admin scope, as each operation says)"}}


def api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """(path, route) of every documented operation, through included routers too."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)  # FastAPI >= 0.16x
    pairs = ([(c.path_format, c.original_route) for c in contexts(app.routes)] if contexts
             else [(getattr(r, "path_format", ""), r) for r in app.routes])
    for path, route in pairs:
        if isinstance(route, APIRoute) and route.include_in_schema:
            yield path, route


def build(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                         description=app.description, routes=app.routes)
    bodies: list[type[BaseModel]] = []
    for path, route in api_routes(app):
        for method in route.methods or ():
            operation = schema["paths"][path][method.lower()]
            operation.pop("requestBody", None)  # every documented body is a json_body model
            complete(operation, route, f"{method} {path}")
        if (model := body_model(route)) is not None:
            bodies.append(model)
    _components(schema, bodies)
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
