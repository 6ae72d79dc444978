"""Trained prompt models on disk: ``<data dir>/grading/prompt-<id>/`` holds the fitted model (joblib: text
space, cut points, conformal scale, reference statistics), the head as ONNX, and ``meta.json``.

Serving loads a prompt's model once per file version and runs the head with ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from grading_nlp._model import PromptModel
from grading_nlp.data import EssayGraderStatus
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
_LOAD_ERRORS: dict[tuple[str, float], str] = {}  # file versions that failed to load, with why (for operators)
_HEAD_INPUTS: dict[tuple[str, float], int] = {}
_LOCK = threading.Lock()


def _key(path: Path) -> tuple[str, float]:
    return str(path), path.stat().st_mtime


def _head_session(path: Path):
    import onnxruntime as ort

    # One thread, no spinning: ORT's default pool (a spinning thread per core) burned ~5 ms CPU per
    # essay on 2 cores, more than the head itself; batches of essays amortise the run instead.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def load_model(settings: Settings, prompt_id: int) -> LoadedModel | None:
    """The trained model of a prompt (cached per file version), or None when the prompt has none."""
    directory = prompt_dir(settings, prompt_id)
    path = directory / MODEL_FILE
    if not path.is_file():
        return None
    key = _key(path)
    with _LOCK:
        if key not in _LOADED:
            import joblib

            try:
                model = joblib.load(path)
                session = _head_session(directory / HEAD_FILE) if (directory / HEAD_FILE).is_file() else None
            except Exception as exc:
                # Remembered so the model service's /admin/models can say why this grader serves nothing.
                _LOAD_ERRORS[key] = f"{type(exc).__name__}: {str(exc)[:300]}"
                raise
            _LOADED[key] = LoadedModel(model, session)
            _LOAD_ERRORS.pop(key, None)
        return _LOADED[key]


def _head_inputs(directory: Path, loaded: LoadedModel | None) -> int | None:
    """How many features the prompt's head takes: from the loaded model, else from the ONNX head's input shape
    (read once per file version), else None."""
    if loaded is not None:
        return len(loaded.model.feature_names)
    head = directory / HEAD_FILE
    try:
        key = _key(head)
    except OSError:
        return None
    if key not in _HEAD_INPUTS:
        try:
            width = _head_session(head).get_inputs()[0].shape[-1]
        except Exception as exc:  # noqa: BLE001 - ORT's errors derive from Exception; the count is only shown
            logging.getLogger(__name__).warning("cannot read the input shape of %s: %s", head, exc)
            return None
        if not isinstance(width, int):
            return None
        _HEAD_INPUTS[key] = width
    return _HEAD_INPUTS[key]


def _trained_at(meta: dict, model_path: Path) -> str | None:
    """When the grader was trained: recorded in meta.json, else the stamp of its version, else the model file's
    modification time."""
    if meta.get("trained_at"):
        return str(meta["trained_at"])
    stamp = re.search(r"-(\d{8}T\d{6})$", str(meta.get("model_version") or ""))
    if stamp:
        return datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC).isoformat()
    try:
        return datetime.fromtimestamp(model_path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        return None


def grader_statuses(settings: Settings) -> list[EssayGraderStatus]:
    """Every prompt folder under ``models_dir`` as the serving code sees it, by prompt."""
    folder = models_dir(settings)
    if not folder.is_dir():
        return []
    statuses = []
    for directory in folder.glob("prompt-*"):
        try:
            prompt_id = int(directory.name.removeprefix("prompt-"))
        except ValueError:
            continue
        statuses.append(_grader_status(directory, prompt_id))
    return sorted(statuses, key=lambda status: status.prompt_id)


def _grader_status(directory: Path, prompt_id: int) -> EssayGraderStatus:
    model_path = directory / MODEL_FILE
    problems = []
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        meta = {}
        problems.append(f"{META_FILE} unreadable ({type(exc).__name__}): version and origin unknown")
    loaded, servable, key = None, model_path.is_file(), None
    if servable:
        key = _key(model_path)
        with _LOCK:
            loaded = _LOADED.get(key)
            failed = _LOAD_ERRORS.get(key)
        if failed:
            servable = False
            problems.insert(0, f"the grader failed to load ({failed}); its essays go to staff for manual grading: "
                               f"retrain it with `learnloop train essays --prompt {prompt_id}`")
        elif not (directory / HEAD_FILE).is_file():
            problems.append(f"no {HEAD_FILE}: graded with the scikit-learn head (slower); retrain to export it")
    else:
        problems.insert(0, f"no {MODEL_FILE}: essays of prompt {prompt_id} go to staff for manual grading; train it "
                           f"with `learnloop train essays --prompt {prompt_id}`")
    version = loaded.model.model_version if loaded is not None else meta.get("model_version")
    return EssayGraderStatus(
        prompt_id=prompt_id, location=str(directory), model_version=version, kind=meta.get("kind"),
        trained_on=meta.get("essays_path"), trained_at=_trained_at(meta, model_path),
        n_inputs=meta.get("n_inputs") or (_head_inputs(directory, loaded) if servable else None),
        registered_version=meta.get("registered_version"), loaded=loaded is not None, servable=servable,
        problem="; ".join(problems) or None)
