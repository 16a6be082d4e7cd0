"""One typed place for every setting.

Values come, highest priority first, from keyword arguments, ``KBASSIST_*`` environment
variables, a TOML config file (``KBASSIST_CONFIG`` or ``./kbassist.toml``), then defaults.
Nothing else in the code base reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

KNOWLEDGE_BASES = ("default", "demo")
# RFC 9110 field names; values: visible ASCII, space and tab (no CR/LF, which would split a header).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
DEMO_SUFFIX = "-demo"


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "kbassist"


def _config_file() -> Path:
    return Path(os.environ.get("KBASSIST_CONFIG", "kbassist.toml"))


class Settings(BaseSettings):
    """Every tunable of kbassist. See README "Settings" for the environment variable names."""

    # An invalid value is reported by field name and reason only, never echoed: several are secrets.
    model_config = SettingsConfigDict(env_prefix="KBASSIST_", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Field(default_factory=_default_data_dir, description="Embedded Chroma data and caches.")
    chroma_url: str | None = Field(
        default=None, description="Use a Chroma server (http://host:port) instead of the embedded store."
    )
    collection: str = Field(default="kbassist", description="Chroma collection holding the chunks.")
    # The bundled demo is a knowledge base of its own, so a user's starts empty and the demo
    # never mixes with their documents; this one switch selects it everywhere (CLI, app, eval).
    kb: Literal["default", "demo"] = Field(
        default="default",
        description="Which knowledge base: 'default' (yours) or 'demo' (the bundled demo, written by "
        "`kbassist ingest --demo`), kept in its own collection, interaction log and evaluation runs.",
    )
    # Credentials for a Chroma server, checked by the authenticating proxy in front of it (README
    # "Chroma server"): `chroma run` itself accepts every request.
    chroma_token: SecretStr | None = Field(
        default=None,
        description="Token sent with every Chroma server request, in the header named by chroma_token_header.",
    )
    chroma_token_header: str = Field(
        default="Authorization",
        description="Header carrying chroma_token: 'Authorization' sends 'Bearer TOKEN'; any other "
        "header (e.g. 'X-Chroma-Token') carries the bare token.",
    )
    chroma_headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Further headers sent with every Chroma server request, as a JSON object in the "
        'environment (KBASSIST_CHROMA_HEADERS=\'{"X-Api-Key": "..."}\') or a table in the config file.',
    )
    # A Chroma server that stops answering mid-run (restart, network blip) is retried; the embedded store is not.
    chroma_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description="Retries of a Chroma server request that could not connect, before giving up (0: fail at once).",
    )
    chroma_retry_backoff_s: float = Field(
        default=0.25,
        ge=0.0,
        le=30.0,
        description="Wait before the first retry; it doubles on each further retry, with jitter.",
    )
    chroma_retry_max_backoff_s: float = Field(
        default=4.0, ge=0.0, le=120.0, description="Longest wait between two retries of a Chroma server request."
    )
    chroma_timeout_s: float = Field(
        default=15.0,
        gt=0.0,
        le=600.0,
        description="Longest wait for one Chroma server request; a server that does not answer in time is retried.",
    )

    embedding_model: Literal["minilm-int8"] = "minilm-int8"
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    ingest_group_chunks: int = Field(
        default=256, ge=1, description="Chunks embedded together before their documents are written (memory vs speed)."
    )

    # 384 measured best on PolicyQA among 128-512 while keeping citations precise; see bench/results.
    chunk_max_tokens: int = Field(
        default=384,
        ge=32,
        le=4096,
        description="Upper bound of a chunk, in cl100k_base tokens, heading prefix included.",
    )
    chunk_overlap_tokens: int = Field(default=48, ge=0, le=1024)

    max_file_mb: float = Field(default=25.0, gt=0, description="Files above this size are rejected at ingest.")
    # Limits against hostile input: a small file that unpacks to gigabytes, a parser that never ends.
    max_unpacked_mb: float = Field(
        default=100.0,
        gt=0,
        description="Most a file may unpack to at ingest: the parts of a DOCX together, each stream of a PDF.",
    )
    max_compression_ratio: float = Field(
        default=100.0,
        ge=1,
        description="A DOCX part of over 1 MB that unpacks to more than this many times its packed size is rejected.",
    )
    parse_timeout_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Longest time one file may take to be read (in a worker process, stopped when it is over); "
        "0 reads in the ingest process itself, without a limit.",
    )

    # Retrieval and answering.
    candidates: int = Field(default=30, ge=1, le=500, description="Candidates taken from each retriever before fusion.")
    top_k: int = Field(default=5, ge=1, le=50, description="Passages kept after fusion and reranking.")
    rerank: bool = Field(default=True, description="Apply the lexical coverage reranker after fusion.")
    confidence_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description=(
            "Answer only when the calibrated probability that the answer is right reaches this; "
            "default: the threshold fitted with the answerability model."
        ),
    )
    models_dir: Path | None = Field(
        default=None,
        description=(
            "Folder of answer models fitted on your own questions (kbassist eval calibrate writes "
            "segments.json and answerability.json); default: the models shipped with kbassist."
        ),
    )
    max_question_chars: int = Field(default=2000, ge=10)
    lexical_dir: Path | None = Field(
        default=None,
        description="Where the persisted BM25 indexes live (default data_dir/lexical): local disk or a shared volume.",
    )
    lexical_shards: int = Field(
        default=1, ge=1, le=64, description="BM25 shards per role scope, split by a stable hash of doc_id."
    )

    # Optional OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp). Off unless a URL is set.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_context_tokens: int = Field(
        default=3000, ge=256, description="Token budget for the passages sent to the model."
    )
    llm_max_answer_tokens: int = Field(default=500, ge=16)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_usd_per_1k_prompt_tokens: float | None = Field(
        default=None, ge=0, description="Price of 1,000 prompt tokens, for the cost per answer in evaluation reports."
    )
    llm_usd_per_1k_completion_tokens: float | None = Field(
        default=None, ge=0, description="Price of 1,000 completion tokens, for the cost per answer in evaluation reports."
    )

    # The app's state: conversations, feedback, hand-offs, accounts, sessions, audit log (kb.state).
    state_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state store (default sqlite:///DATA_DIR/state.sqlite; "
        "postgresql+psycopg://user:password@host/db when several processes or machines share it).",
    )
    interactions_db: Path | None = Field(
        default=None,
        description="The interaction log of earlier releases (default data_dir/interactions.sqlite), imported "
        "into the state store once when it is opened.",
    )

    # Staff sign-in (agent and owner workspaces).
    session_idle_minutes: float = Field(
        default=30.0, gt=0, le=24 * 60, description="A session unused this long expires."
    )
    session_max_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="A session expires this long after sign-in, however active."
    )
    password_min_length: int = Field(default=12, ge=8, le=128, description="Shortest password an account may have.")
    signin_backoff_after: int = Field(
        default=3, ge=1, le=100, description="Failed sign-ins (per account name or per client) before each retry waits."
    )
    signin_backoff_s: float = Field(
        default=2.0, ge=0, le=600, description="Wait after the first throttled failure; doubles with each further one."
    )
    signin_lockout_after: int = Field(
        default=10, ge=1, le=1000, description="Failed sign-ins for one account name before it is locked."
    )
    signin_client_backoff_after: int = Field(
        default=10, ge=1, le=10000, description="Failed sign-ins from one client before each retry from it waits."
    )
    signin_client_lockout_after: int = Field(
        default=50, ge=1, le=100000, description="Failed sign-ins from one client (any account) before it is locked."
    )
    signin_lockout_minutes: float = Field(
        default=15.0, gt=0, le=24 * 60, description="How long a lockout lasts; failures older than this are forgotten."
    )

    # Hand-offs out to the help desk.
    handoff_webhook_url: str | None = Field(
        default=None, description="POST every new hand-off as signed JSON to this URL (help desk, Slack middleware)."
    )
    handoff_webhook_secret: SecretStr | None = Field(
        default=None, description="Shared secret of the HMAC-SHA256 signature on each webhook request."
    )
    handoff_webhook_on_resolve: bool = Field(default=False, description="Also send an event when a hand-off is resolved.")
    handoff_webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    handoff_webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Attempts before a delivery is kept as failed."
    )
    handoff_webhook_backoff_s: float = Field(
        default=30.0, ge=0, le=3600, description="Wait before the first retry of a delivery; doubles each time."
    )
    handoff_webhook_max_backoff_s: float = Field(default=3600.0, ge=0, le=24 * 3600)
    # The customer chat's own words: what the page is called and how it greets.
    brand_name: str = Field(
        default="Help centre", min_length=1, max_length=80,
        description="Name the customer chat shows as its heading (\"<brand> chat\").",
    )
    page_title: str = Field(
        default="Help centre", min_length=1, max_length=80, description="Browser tab title of the customer chat."
    )
    customer_greeting: str = Field(
        default="Hi! Ask me anything about your purchases, payments, returns or your account.",
        min_length=1,
        max_length=500,
        description="First message of the customer chat.",
    )
    reply_opening: str = Field(
        default="Thanks for getting in touch.",
        description="First line of the reply an agent is offered to send to a customer.",
    )
    handoff_next_steps: str = Field(
        default=(
            "A member of our support team will contact you. They can see this conversation, "
            "so you won't need to repeat yourself."
        ),
        description="What a customer is told after asking for a person (your real contact promise goes here).",
    )
    # Documents and answers shown to customers may link only here; everything else is plain text.
    customer_link_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated domains (and their subdomains) that links in the customer chat may point "
        "to; empty: no links are rendered, only their text. Images are never rendered.",
    )

    @field_validator("customer_link_domains", mode="before")
    @classmethod
    def _domain_list(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else (value or ())
        domains = (str(d).strip().lower().strip(".") for d in items)
        return tuple(dict.fromkeys(d for d in domains if d))

    @field_validator("chroma_url", "llm_base_url", "state_url", "handoff_webhook_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("chroma_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):  # a token read from a file often ends with a newline
            return value.strip() or None
        return value

    @field_validator("chroma_token_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be an HTTP header name such as Authorization or X-Chroma-Token")
        return value

    @field_validator("chroma_token")
    @classmethod
    def _token_value(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _HEADER_VALUE.fullmatch(value.get_secret_value()):
            raise ValueError("may hold only printable ASCII characters (no line breaks)")
        return value

    @field_validator("chroma_headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if not _HEADER_VALUE.fullmatch(secret.get_secret_value()):
                raise ValueError(f"the value of {name} may hold only printable ASCII characters (no line breaks)")
        return value

    @model_validator(mode="after")
    def _token_header_once(self) -> Settings:
        if self.chroma_token is not None and self.chroma_token_header.lower() in {n.lower() for n in self.chroma_headers}:
            raise ValueError(
                f"the {self.chroma_token_header} header is set twice, by chroma_token and by chroma_headers; keep one"
            )
        return self

    def chroma_request_headers(self) -> dict[str, str]:
        """The headers every Chroma server request carries: ``chroma_headers``, then the token.

        These are secrets: pass them to the HTTP client, never to a log line or a message.
        """
        headers = {name: value.get_secret_value() for name, value in self.chroma_headers.items()}
        if self.chroma_token is not None:
            token = self.chroma_token.get_secret_value()
            is_authorization = self.chroma_token_header.lower() == "authorization"
            headers[self.chroma_token_header] = f"Bearer {token}" if is_authorization else token
        return headers

    @property
    def chroma_credentials(self) -> str:
        """Which credential settings are in use, by name (for messages): never their values."""
        names = []
        if self.chroma_token is not None:
            names.append(f"KBASSIST_CHROMA_TOKEN (sent in {self.chroma_token_header})")
        if self.chroma_headers:
            names.append("KBASSIST_CHROMA_HEADERS (" + ", ".join(sorted(self.chroma_headers)) + ")")
        return " and ".join(names)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def is_demo(self) -> bool:
        return self.kb == "demo"

    @property
    def kb_collection(self) -> str:
        """The Chroma collection of the selected knowledge base: ``collection``, or ``collection-demo``."""
        return f"{self.collection}{DEMO_SUFFIX}" if self.is_demo else self.collection

    @property
    def kb_home(self) -> Path:
        """Where the selected knowledge base keeps its own files (interaction log, evaluation runs, uploads)."""
        return self.data_dir / "demo" if self.is_demo else self.data_dir

    @property
    def eval_runs_path(self) -> Path:
        return self.kb_home / "eval-runs"

    @property
    def uploads_path(self) -> Path:
        return self.kb_home / "uploads"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def lexical_path(self) -> Path:
        return self.lexical_dir or self.data_dir / "lexical"

    @property
    def interactions_path(self) -> Path:
        return self.interactions_db or self.kb_home / "interactions.sqlite"

    @property
    def state_database_url(self) -> str:
        """The state store's SQLAlchemy URL: the setting, or a SQLite file in the data folder."""
        return self.state_url or f"sqlite:///{self.data_dir / 'state.sqlite'}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings; fails with a clear message when the config file is not valid TOML."""
    path = _config_file()
    if path.is_file():
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    return Settings(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()
