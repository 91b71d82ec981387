"""Connections: libpq TLS parameters in a PostgreSQL URL become asyncpg's ``ssl``; the Temporal
connection comes from the SDK's environment configuration (TOML profiles, TEMPORAL_*) with
walletflow's settings over it; /readyz accepts a database at or past this code's head."""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import certifi
import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url
from temporalio.client import TLSConfig

from api.app import create_app
from db.engine import asyncpg_connect_args, create_engine, ping
from db.migrate import head_revision, known_revisions, schema_problem, upgrade_async
from settings import Settings
from temporal_client import DEV_ADDRESS, connect, connect_options
from tests.conftest import make_settings
from tests.support import LiveServer

BASE = "postgresql+asyncpg://wf:p%40ss@db.example.com:6543/wallet"


def args(query: str) -> dict[str, object]:
    url, connect_args = asyncpg_connect_args(f"{BASE}?{query}")
    assert make_url(url).query == {}
    return connect_args


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=wf",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return str(d / "cert.pem"), str(d / "key.pem")


# -- PostgreSQL: sslmode ------------------------------------------------------------------------

def test_each_sslmode_becomes_the_asyncpg_equivalent(client_cert: tuple[str, str]) -> None:
    assert asyncpg_connect_args(BASE) == (BASE, {})
    for mode in ("disable", "allow", "prefer"):
        assert args(f"sslmode={mode}") == {"ssl": mode}
    cases = {  # query → (check_hostname, verify_mode, CA loaded)
        "sslmode=require": (False, ssl.CERT_NONE, False),
        f"sslmode=require&sslrootcert={certifi.where()}": (False, ssl.CERT_REQUIRED, True),
        f"sslmode=verify-ca&sslrootcert={certifi.where()}": (False, ssl.CERT_REQUIRED, True),
        f"sslmode=verify-full&sslrootcert={certifi.where()}": (True, ssl.CERT_REQUIRED, True),
        "sslmode=verify-full&sslrootcert=system": (True, ssl.CERT_REQUIRED, None),
        f"sslmode=verify-ca&sslrootcert={client_cert[0]}&sslcert={client_cert[0]}"
        f"&sslkey={client_cert[1]}": (False, ssl.CERT_REQUIRED, True),
        f"sslmode=require&sslcert={client_cert[0]}&sslkey={client_cert[1]}":
            (False, ssl.CERT_NONE, False),
    }
    for query, (check_hostname, verify_mode, ca_loaded) in cases.items():
        ctx = args(query)["ssl"]
        assert isinstance(ctx, ssl.SSLContext), query
        assert (ctx.check_hostname, ctx.verify_mode) == (check_hostname, verify_mode), query
        if ca_loaded is not None:
            assert bool(ctx.get_ca_certs()) == ca_loaded, query
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(FileNotFoundError):
        args("sslmode=verify-ca&sslrootcert=/nonexistent/root.crt")
    with pytest.raises(ssl.SSLError):  # a certificate is not a private key
        args(f"sslmode=require&sslcert={client_cert[0]}&sslkey={client_cert[0]}")
    for bad in ("sslmode=on", f"sslmode=prefer&sslcert={client_cert[0]}", "sslkey=/k.pem"):
        with pytest.raises(ValueError):
            args(bad)


_KEY = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda k: not k.startswith("ssl"))
_VALUE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                 max_size=12)


@hsettings(max_examples=150, deadline=None)
@given(extra=st.dictionaries(_KEY, _VALUE, max_size=4),
       mode=st.sampled_from(["disable", "allow", "prefer", "require", None]),
       first=st.booleans())
def test_other_query_parameters_survive(extra: dict[str, str], mode: str | None,
                                        first: bool) -> None:
    pairs = [f"{quote(k)}={quote(v, safe='')}" for k, v in extra.items()]
    ssl_pair = [f"sslmode={mode}"] if mode else []
    query = "&".join(ssl_pair + pairs if first else pairs + ssl_pair)
    url, connect_args = asyncpg_connect_args(f"{BASE}?{query}" if query else BASE)
    parsed, base = make_url(url), make_url(BASE)
    assert dict(parsed.query) == extra
    assert (parsed.drivername, parsed.username, parsed.password, parsed.host, parsed.port,
            parsed.database) == (base.drivername, "wf", "p@ss", base.host, 6543, "wallet")
    if mode in ("disable", "allow", "prefer"):
        assert connect_args == {"ssl": mode}
    elif mode == "require":
        assert isinstance(connect_args["ssl"], ssl.SSLContext)
    else:
        assert connect_args == {}


def with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


@pytest.mark.parametrize("mode", ["disable", "prefer", "allow"])
async def test_the_sessions_postgresql_accepts_libpq_sslmode(database_url: str, mode: str
                                                              ) -> None:
    """The embedded server has no TLS: disable connects in plain TCP, allow/prefer fall back."""
    url = with_query(database_url, f"sslmode={mode}")
    engine = create_engine(url, 1)
    try:
        await ping(engine)
    finally:
        await engine.dispose()


async def test_migrations_run_over_an_sslmode_url(database_url: str) -> None:
    await upgrade_async(with_query(database_url, "sslmode=prefer"))  # at head: connects, no-op


# -- Temporal: envconfig ----------------------------------------------------------------------

def profile_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"temporal-{secrets.token_hex(3)}.toml"
    path.write_text(body)
    return path


@pytest.fixture
def no_temporal_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TEMPORAL_* variable and no default Temporal config file in this test."""
    import os

    for k in list(os.environ):
        if k.startswith("TEMPORAL_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))


async def test_a_toml_profile_connects_to_the_dev_server(tmp_path: Path, temporal_address: str,
                                                         no_temporal_env: None) -> None:
    path = profile_file(tmp_path, f'[profile.default]\naddress = "127.0.0.1:1"\n'
                                  f'[profile.tests]\naddress = "{temporal_address}"\n'
                                  'namespace = "default"\n')
    s = Settings(temporal_config_file=path, temporal_profile="tests")
    assert s.temporal_address is None
    client = await connect(s)
    assert client.service_client.config.target_host == temporal_address
    assert client.namespace == "default"
    await client.service_client.check_health()


def test_profile_env_and_settings_precedence(tmp_path: Path, no_temporal_env: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = profile_file(tmp_path, '[profile.prod]\naddress = "file:7233"\nnamespace = "ns-file"\n'
                                  '[profile.prod.grpc_meta]\nx-tenant = "acme"\n')
    assert connect_options(Settings())["target_host"] == DEV_ADDRESS  # nothing configured
    assert connect_options(Settings())["tls"] is False
    s = Settings(temporal_config_file=path, temporal_profile="prod")
    opts = connect_options(s)
    assert (opts["target_host"], opts["namespace"], opts["api_key"], opts["tls"],
            opts["rpc_metadata"]) == ("file:7233", "ns-file", None, False, {"x-tenant": "acme"})
    # TEMPORAL_* variables override the file (the SDK's rule) …
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(path))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "ns-env")
    opts = connect_options(Settings())
    assert (opts["target_host"], opts["namespace"]) == ("file:7233", "ns-env")
    # … and walletflow's explicit settings override both
    opts = connect_options(Settings(temporal_address="explicit:7233", temporal_namespace="ns-x",
                                    temporal_api_key="key-x"))  # type: ignore[arg-type]
    assert (opts["target_host"], opts["namespace"], opts["api_key"], opts["tls"]) == (
        "explicit:7233", "ns-x", "key-x", True)


def test_tls_options_map_into_tls_config(tmp_path: Path, no_temporal_env: None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    files = {}
    for name in ("ca", "cert", "key", "cert2", "key2"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(f"-- {name} {secrets.token_hex(4)} --".encode())
    path = profile_file(tmp_path, f"""[profile.cloud]
address = "ns.acct.tmprl.cloud:7233"
namespace = "ns.acct"
[profile.cloud.tls]
server_name = "ns.acct.tmprl.cloud"
server_ca_cert_path = "{files['ca']}"
client_cert_path = "{files['cert']}"
client_key_path = "{files['key']}"
""")
    s = Settings(temporal_config_file=path, temporal_profile="cloud")
    assert connect_options(s)["tls"] == TLSConfig(
        domain="ns.acct.tmprl.cloud", server_root_ca_cert=files["ca"].read_bytes(),
        client_cert=files["cert"].read_bytes(), client_private_key=files["key"].read_bytes())
    # explicit client certificate and key replace the profile's; the CA and server name stay
    s = Settings(temporal_config_file=path, temporal_profile="cloud",
                 temporal_tls_cert_path=files["cert2"], temporal_tls_key_path=files["key2"])
    assert connect_options(s)["tls"] == TLSConfig(
        domain="ns.acct.tmprl.cloud", server_root_ca_cert=files["ca"].read_bytes(),
        client_cert=files["cert2"].read_bytes(), client_private_key=files["key2"].read_bytes())
    # the same from TEMPORAL_TLS_* variables alone, no file
    monkeypatch.setenv("TEMPORAL_ADDRESS", "env:7233")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "env.example")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(files["ca"]))
    assert connect_options(Settings())["tls"] == TLSConfig(
        domain="env.example", server_root_ca_cert=files["ca"].read_bytes())
    assert connect_options(Settings(temporal_tls=False))["tls"] is False
    monkeypatch.delenv("TEMPORAL_TLS_SERVER_NAME")
    monkeypatch.delenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH")
    assert connect_options(Settings(temporal_tls=True))["tls"] is True
    # explicit mTLS files alone: a TLSConfig with just the client certificate and key
    only_cert = connect_options(Settings(temporal_tls_cert_path=files["cert"],
                                         temporal_tls_key_path=files["key"]))["tls"]
    assert only_cert == TLSConfig(client_cert=files["cert"].read_bytes(),
                                  client_private_key=files["key"].read_bytes())


# -- readiness: at or past head -----------------------------------------------------------------

def test_schema_problem_for_each_kind_of_revision() -> None:
    head = head_revision()
    older = sorted(known_revisions() - {head})
    assert head and older
    assert schema_problem(head) is None
    assert schema_problem("a1b2c3_next_release_expand") is None
    assert all("older than" in (schema_problem(r) or "") for r in older)
    assert "none applied" in (schema_problem(None) or "")


@pytest.fixture
async def stamped_api(database_url: str, temporal_address: str, standin: LiveServer
                      ) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """An API on a dedicated database that has only an ``alembic_version`` table."""
    name = f"stamp_{secrets.token_hex(3)}"
    admin = create_engine(database_url, 1)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, query = database_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")
    db = create_engine(url, 1)
    async with db.begin() as conn:
        await conn.execute(text("CREATE TABLE alembic_version (version_num varchar(64) "
                                "PRIMARY KEY)"))

    async def stamp(revision: str | None) -> None:
        async with db.begin() as conn:
            await conn.execute(text("DELETE FROM alembic_version"))
            if revision:
                await conn.execute(text("INSERT INTO alembic_version VALUES (:r)"),
                                   {"r": revision})

    server = await LiveServer(create_app(make_settings(url, temporal_address, standin.url))
                              ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client, stamp
    finally:
        await server.stop()
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_readyz_accepts_head_and_newer_but_not_older_revisions(stamped_api) -> None:
    api, stamp = stamped_api
    older = max(known_revisions() - {head_revision()})
    for revision, ready in ((head_revision(), True), ("a1b2c3_next_release_expand", True),
                            (older, False), (None, False)):
        await stamp(revision)
        r = await api.get("/readyz")
        assert (r.status_code == 200) == ready, (revision, r.text)
        postgres = r.json()["checks"]["postgres"]
        assert (postgres == "ok") == ready, (revision, postgres)
        if revision == older:
            assert "migrations not current" in postgres and older in postgres
