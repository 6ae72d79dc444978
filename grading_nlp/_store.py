"""Trained prompt models on disk: ``<data dir>/grading/prompt-<id>/`` holds the fitted model (joblib: text
space, cut points, conformal scale, reference statistics), the head as ONNX, and ``meta.json``.

Serving loads a prompt's model once per file version and runs the head with ONNX Runtime.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grading_nlp._model import PromptModel
from learnloop.errors import InvalidInput
from learnloop.settings import Settings

PARITY_TOLERANCE = 1e-5
MODEL_FILE, HEAD_FILE, META_FILE = "model.joblib", "head.onnx", "meta.json"


def models_dir(settings: Settings) -> Path:
    return settings.data_path / "grading"


def prompt_dir(settings: Settings, prompt_id: int) -> Path:
    return models_dir(settings) / f"prompt-{prompt_id}"


def export_head_onnx(model: PromptModel, held_out: np.ndarray) -> tuple[bytes, float]:
    """The head as ONNX (input ``features`` float32 [n, d], output ``variable`` [n, 1]) and its parity.

    Raises ``InvalidInput`` when ONNX and sklearn differ by more than ``PARITY_TOLERANCE`` on ``held_out``.
    """
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    held_out = np.asarray(held_out, dtype=np.float32)
    onnx_model = convert_sklearn(model.scorers.head, initial_types=[("features", FloatTensorType([None, held_out.shape[1]]))],
                                 target_opset=17)
    onnx_bytes = onnx_model.SerializeToString()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"features": held_out})[0].ravel()
    native = np.asarray(model.scorers.head.predict(held_out), dtype=np.float64)
    diff = float(np.max(np.abs(onnx_out - native))) if len(native) else 0.0
    if diff > PARITY_TOLERANCE:
        raise InvalidInput(f"ONNX head of prompt {model.prompt_id} differs from sklearn by {diff:.2e} "
                           f"(> {PARITY_TOLERANCE}); do not serve it — check the converter version")
    return onnx_bytes, diff


def save_model(settings: Settings, model: PromptModel, onnx_bytes: bytes, meta: dict) -> Path:
    import joblib

    directory = prompt_dir(settings, model.prompt_id)
    directory.mkdir(parents=True, exist_ok=True)
    for name, write in ((MODEL_FILE, lambda p: joblib.dump(model, p)), (HEAD_FILE, lambda p: p.write_bytes(onnx_bytes)),
                        (META_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))):
        tmp = directory / f".{name}.tmp"
        write(tmp)
        tmp.replace(directory / name)  # atomic: a concurrent reader sees the old or the new file, never half
    return directory


@dataclass
class LoadedModel:
    model: PromptModel
    session: object | None  # onnxruntime.InferenceSession of the head

    def head(self, dense: np.ndarray) -> np.ndarray:
        if self.session is None:
            return np.asarray(self.model.scorers.head.predict(dense), dtype=np.float64)
        return self.session.run(None, {"features": dense.astype(np.float32)})[0].ravel().astype(np.float64)


_LOADED: dict[tuple[str, float], LoadedModel] = {}
_LOCK = threading.Lock()


def load_model(settings: Settings, prompt_id: int) -> LoadedModel | None:
    """The trained model of a prompt (cached per file version), or None when the prompt has none."""
    directory = prompt_dir(settings, prompt_id)
    path = directory / MODEL_FILE
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime)
    with _LOCK:
        if key not in _LOADED:
            import joblib

            model = joblib.load(path)
            session = None
            if (directory / HEAD_FILE).is_file():
                import onnxruntime as ort

                # One thread, no spinning: ORT's default pool (a spinning thread per core) burned ~5 ms CPU per
                # essay on 2 cores, more than the head itself; batches of essays amortise the run instead.
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(str(directory / HEAD_FILE), sess_options=options,
                                               providers=["CPUExecutionProvider"])
            _LOADED[key] = LoadedModel(model, session)
        return _LOADED[key]
