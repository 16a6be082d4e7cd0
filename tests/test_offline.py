"""Proof that nothing is downloaded: run real work with every non-loopback connection refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GUARD = r"""
import socket, sys
attempts = []
_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo

def _is_local(host):
    return str(host) in ("localhost", "::1") or str(host).startswith("127.")

def connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if not _is_local(host) and self.family != socket.AF_UNIX:
        attempts.append(str(address)); raise OSError("network disabled by test")
    return _real_connect(self, address)

def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_local(host):
        attempts.append(str(host)); raise socket.gaierror("network disabled by test")
    return _real_getaddrinfo(host, *args, **kwargs)

socket.socket.connect = connect
socket.getaddrinfo = getaddrinfo
import atexit
ATTEMPTS_FILE, DOCS, TIKTOKEN_DIR = sys.argv[1:4]
atexit.register(lambda: open(ATTEMPTS_FILE, "w").write("\n".join(attempts)))
"""

WORK = r"""
sys.argv = ["kbassist", "ingest", DOCS]
from kb.tokens import install_offline_cache
from pathlib import Path
import tiktoken
install_offline_cache(Path(TIKTOKEN_DIR))
assert tiktoken.get_encoding("cl100k_base").encode("refund")
from kbassist_cli import main
try:
    main()
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
from kb.embedding import MiniLMEmbedding
assert MiniLMEmbedding().embed(["offline"]).shape == (1, 384)
"""


def test_ingest_and_embed_without_network(tmp_path: Path, docs_dir: Path) -> None:
    attempts = tmp_path / "attempts.txt"
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "KBASSIST_DATA_DIR": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    env.pop("TIKTOKEN_CACHE_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", GUARD + WORK, str(attempts), str(docs_dir), str(tmp_path / "tiktoken")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 added" in result.stdout
    assert attempts.read_text() == "", f"network was attempted: {attempts.read_text()}"
    assert not (tmp_path / "home" / ".cache" / "chroma").exists(), "nothing may land in chroma's model cache"


def test_the_guard_catches_a_download(tmp_path: Path) -> None:
    """Plain tiktoken without the bundled file tries the network: the guard must see it."""
    attempts = tmp_path / "attempts.txt"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty")}
    code = GUARD + "\nimport tiktoken\ntry:\n    tiktoken.get_encoding('cl100k_base')\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code, str(attempts), "", ""], env=env, timeout=120, check=True)
    assert attempts.read_text() != ""
