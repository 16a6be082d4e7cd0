"""Credentials for a Chroma server, through a real authenticating proxy in front of a real ``chroma run``.

``chroma run`` (chromadb 1.x) checks no credentials itself, so README "Chroma server" binds it to
127.0.0.1 and puts an authenticating reverse proxy in front; ``tests/support/auth_proxy.py`` is
such a proxy. The client is chromadb's own HttpClient, as kbassist opens it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

import kbassist_cli
from ingest.pipeline import ingest
from kb.settings import Settings
from kb.store import KnowledgeStore, StoreAuthError, StoreUnavailable
from tests.support.auth_proxy import AuthProxy
from tests.support.chroma_server import ChromaServer, free_port

TOKEN = "kb-token-5f3a9c1e7d"
WRONG = "kb-token-wrong-0000"
QUESTION = "how many days do I have to return an item"
RETRIES = 3
CHROMA_0X_AUTH_ENV = {
    "CHROMA_SERVER_AUTHN_PROVIDER": "chromadb.auth.token_authn.TokenAuthenticationServerProvider",
    "CHROMA_SERVER_AUTHN_CREDENTIALS": TOKEN,
    "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": "Authorization",
}


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    # The server-side auth settings of chromadb's 0.x Python server; `chroma run` ignores them.
    server = ChromaServer(tmp_path_factory.mktemp("chroma-behind-proxy"), env=CHROMA_0X_AUTH_ENV)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(chroma: ChromaServer) -> Iterator[AuthProxy]:
    with AuthProxy(chroma.url, "Authorization", f"Bearer {TOKEN}") as running:
        yield running


def settings_for(url: str, tmp_path: Path, **credentials: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        chroma_url=url,
        collection=f"auth-{uuid.uuid4().hex[:8]}",
        chroma_retries=RETRIES,
        chroma_retry_backoff_s=0.05,
        **credentials,
    )


def _ingest_and_ask(settings: Settings, docs_dir: Path) -> None:
    store = KnowledgeStore(settings)
    report = ingest([docs_dir], store)
    assert report.ok and sorted(report.added) == ["fees", "refunds"]
    query = store.embedder.embed([QUESTION])[0]
    hits = store.query(query, n_results=3, where={"audience": "customer"})
    assert hits and "30 days" in hits[0][1]


# -- the finding the layout rests on ----------------------------------------------------------------


def test_chroma_run_itself_serves_anyone(chroma: ChromaServer) -> None:
    """Why the proxy is needed: started with the 0.x token settings, ``chroma run`` still lists and
    creates collections for a request with no credentials at all.

    If a later chromadb starts refusing here, its own auth can replace the proxy (README "Chroma server").
    """
    base = chroma.url + "/api/v2/tenants/default_tenant/databases/default_database/collections"
    name = f"open-{uuid.uuid4().hex[:8]}"
    create = urllib.request.Request(
        base, data=json.dumps({"name": name}).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(create, timeout=10) as answer:
        assert answer.status == 200
    with urllib.request.urlopen(base, timeout=10) as answer:
        assert name in {c["name"] for c in json.load(answer)}


# -- the right credentials work -----------------------------------------------------------------------


def test_bearer_token_ingests_and_queries_through_the_proxy(proxy: AuthProxy, tmp_path: Path, docs_dir: Path) -> None:
    _ingest_and_ask(settings_for(proxy.url, tmp_path, chroma_token=SecretStr(TOKEN)), docs_dir)
    assert proxy.seen["forwarded"] > 5 and not proxy.seen["missing"] and not proxy.seen["wrong"]
    assert all("authorization" not in {k.lower() for k in h} for h in proxy.forwarded_headers), "stripped by the proxy"


def test_token_in_x_chroma_token_header(chroma: ChromaServer, tmp_path: Path, docs_dir: Path) -> None:
    with AuthProxy(chroma.url, "X-Chroma-Token", TOKEN) as proxy:
        _ingest_and_ask(
            settings_for(proxy.url, tmp_path, chroma_token=SecretStr(TOKEN), chroma_token_header="X-Chroma-Token"),
            docs_dir,
        )
        assert proxy.seen["forwarded"] > 5 and not proxy.seen["missing"]


def test_arbitrary_headers_from_the_environment(
    chroma: ChromaServer, tmp_path: Path, docs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KBASSIST_CHROMA_HEADERS", json.dumps({"X-Api-Key": TOKEN, "X-Client": "kbassist"}))
    with AuthProxy(chroma.url, "X-Api-Key", TOKEN) as proxy:
        settings = settings_for(proxy.url, tmp_path)
        assert settings.chroma_request_headers() == {"X-Api-Key": TOKEN, "X-Client": "kbassist"}
        _ingest_and_ask(settings, docs_dir)
        assert proxy.seen["forwarded"] > 5
        assert all(h.get("X-Client") == "kbassist" for h in proxy.forwarded_headers)


# -- missing or wrong credentials: one clear error, no retries -----------------------------------------


def test_missing_token_is_a_clear_error_without_retries(
    proxy: AuthProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(StoreAuthError) as failed:
        KnowledgeStore(settings_for(proxy.url, tmp_path))
    assert time.monotonic() - started < 5
    message = str(failed.value)
    assert message.startswith(f"the Chroma server at {proxy.url} refused the request (HTTP 401")
    assert "no credentials were sent" in message and "KBASSIST_CHROMA_TOKEN" in message
    assert proxy.seen == {"missing": 1}, "refused once, not retried"
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_wrong_token_is_a_clear_error_naming_the_setting_not_the_value(
    proxy: AuthProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreAuthError) as failed:
        KnowledgeStore(settings_for(proxy.url, tmp_path, chroma_token=SecretStr(WRONG)))
    message = str(failed.value)
    assert "(HTTP 403 Forbidden: the credentials in KBASSIST_CHROMA_TOKEN (sent in Authorization) were not accepted)" in (
        message
    )
    assert WRONG not in message and TOKEN not in message
    assert proxy.seen == {"wrong": 1}
    assert isinstance(failed.value, StoreUnavailable), "callers that handle an unreachable store handle this too"
    assert all(WRONG not in r.getMessage() for r in caplog.records)


def test_refusal_past_an_open_heartbeat_is_still_a_clear_error(chroma: ChromaServer, tmp_path: Path) -> None:
    """A proxy may let health checks through: the refusal then comes at chromadb's first request."""
    with AuthProxy(chroma.url, "Authorization", f"Bearer {TOKEN}", open_paths=frozenset({"/api/v2/heartbeat"})) as proxy:
        with pytest.raises(StoreAuthError, match=r"refused the request \(HTTP 401 Unauthorized: no credentials"):
            KnowledgeStore(settings_for(proxy.url, tmp_path))
        assert proxy.seen == {"forwarded": 1, "missing": 1}


def test_token_revoked_while_running_fails_the_next_request_once(
    proxy: AuthProxy, tmp_path: Path, docs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal comes from a request chromadb makes itself, past the checks at open."""
    store = KnowledgeStore(settings_for(proxy.url, tmp_path, chroma_token=SecretStr(TOKEN)))
    assert ingest([docs_dir], store).ok
    proxy.expected = "Bearer rotated-token"
    proxy.reset()
    caplog.set_level(logging.WARNING, logger="kb.store")
    started = time.monotonic()
    with pytest.raises(StoreAuthError, match=r"HTTP 403 Forbidden: the credentials in KBASSIST_CHROMA_TOKEN"):
        store.documents()
    assert time.monotonic() - started < 5
    assert proxy.seen == {"wrong": 1}, "a refusal is not retried like a dropped connection"
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_cli_reports_a_refused_token_in_one_line(proxy: AuthProxy, tmp_path: Path, docs_dir: Path) -> None:
    env = {
        "KBASSIST_CONFIG": str(tmp_path / "none.toml"),
        "KBASSIST_DATA_DIR": str(tmp_path / "data"),
        "KBASSIST_CHROMA_URL": proxy.url,
        "KBASSIST_COLLECTION": f"auth-{uuid.uuid4().hex[:8]}",
        "KBASSIST_CHROMA_TOKEN": WRONG,
    }
    result = CliRunner().invoke(kbassist_cli.app, ["ingest", str(docs_dir)], env=env)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused the request (HTTP 403" in errors[0]
    assert WRONG not in result.output and "Traceback" not in result.output
    assert proxy.seen == {"wrong": 1}


# -- a proxy whose Chroma is down is retried like a stopped server --------------------------------------


def test_bad_gateway_is_retried_then_reported(
    proxy: AuthProxy, tmp_path: Path, docs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KnowledgeStore(settings_for(proxy.url, tmp_path, chroma_token=SecretStr(TOKEN)))
    assert ingest([docs_dir], store).ok
    upstream = proxy.upstream
    proxy.upstream = f"http://127.0.0.1:{free_port()}"  # nothing listens: Chroma restarting
    proxy.reset()
    caplog.set_level(logging.WARNING, logger="kb.store")
    with pytest.raises(StoreUnavailable) as failed:
        store.documents()
    assert not isinstance(failed.value, StoreAuthError)
    assert "HTTP 502 Bad Gateway" in str(failed.value) and f"{RETRIES + 1} attempts" in str(failed.value)
    assert proxy.seen == {"bad_gateway": RETRIES + 1}
    proxy.upstream = upstream  # back: the same store works again
    assert [d.doc_id for d in store.documents()] == ["fees", "refunds"]


# -- settings: secrets stay secret ------------------------------------------------------------------------


def test_credentials_never_show_in_settings_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KBASSIST_CHROMA_TOKEN", TOKEN + "\n")  # as read from a file
    monkeypatch.setenv("KBASSIST_CHROMA_HEADERS", json.dumps({"X-Api-Key": WRONG}))
    settings = Settings(data_dir=tmp_path)
    assert settings.chroma_token is not None and settings.chroma_token.get_secret_value() == TOKEN
    shown = [repr(settings), str(settings), settings.model_dump_json(), json.dumps(settings.model_dump(mode="json"))]
    assert all(TOKEN not in text and WRONG not in text for text in shown)
    assert settings.chroma_request_headers() == {"X-Api-Key": WRONG, "Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        ({"chroma_token": f"{TOKEN}\r\nX-Injected: 1"}, "no line breaks"),
        ({"chroma_headers": {"X-Api-Key": f"{TOKEN}\n"}}, "no line breaks"),
        ({"chroma_headers": {"Bad Name": TOKEN}}, "is not an HTTP header name"),
        ({"chroma_token_header": "X Token"}, "must be an HTTP header name"),
        ({"chroma_token": TOKEN, "chroma_headers": {"authorization": TOKEN}}, "set twice"),
    ],
)
def test_invalid_credentials_are_refused_without_echoing_them(credentials: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError) as failed:
        Settings(**credentials)  # type: ignore[arg-type]
    assert reason in str(failed.value) and TOKEN not in str(failed.value)


def test_credentials_in_the_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as failed:
        KnowledgeStore(Settings(data_dir=tmp_path, chroma_url=f"http://kb:{TOKEN}@127.0.0.1:{free_port()}"))
    assert "must not hold a user name or password" in str(failed.value) and TOKEN not in str(failed.value)


def test_blank_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_CHROMA_TOKEN", "")
    assert Settings().chroma_token is None and Settings().chroma_request_headers() == {}
