from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kb.settings import load_settings


def test_env_overrides_config_file_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kbassist.toml"
    config.write_text('collection = "from-file"\ntop_k = 7\n')
    monkeypatch.setenv("KBASSIST_CONFIG", str(config))
    monkeypatch.setenv("KBASSIST_TOP_K", "9")
    settings = load_settings()
    assert settings.collection == "from-file" and settings.top_k == 9
    assert settings.chunk_max_tokens == 384 and settings.chroma_url is None


def test_blank_urls_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_CHROMA_URL", "")
    monkeypatch.setenv("KBASSIST_LLM_BASE_URL", "")
    settings = load_settings()
    assert settings.chroma_url is None and settings.llm_base_url is None


def test_bad_values_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_CHUNK_MAX_TOKENS", "10")
    with pytest.raises(ValidationError, match="chunk_max_tokens"):
        load_settings()
    monkeypatch.delenv("KBASSIST_CHUNK_MAX_TOKENS")
    bad = tmp_path / "bad.toml"
    bad.write_text("data_dir = [")
    monkeypatch.setenv("KBASSIST_CONFIG", str(bad))
    with pytest.raises(ValueError, match="not valid TOML"):
        load_settings()


def test_api_key_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBASSIST_LLM_API_KEY", "sk-test-123")
    settings = load_settings()
    assert "sk-test-123" not in repr(settings)
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == "sk-test-123"
