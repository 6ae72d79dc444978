"""Model-agnostic MLflow registry: register ONNX versions as challenger, gate promotions, roll back.

Tracking and registry share ``settings.mlflow_uri`` (sqlite in the data dir by default); artifacts go to
``settings.mlflow_artifacts_dir``. The URI is set inside each call, never at import time.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from learnloop.errors import Conflict, InvalidInput, NotFound
from learnloop.settings import Settings, get_settings
from models.api import ModelAlias, OnnxExport, alias_version, mlflow_client
from models.data import SCHEMA_FILE
from training.data import (
    GateCheck,
    GatePolicy,
    ModelVersionInfo,
    PromotionDecision,
    PromotionOutcome,
    train_command,
)

# Serving needs only these to run the graph; explicit because inferring them costs ~10 s per log_model.
ONNX_PIP_REQUIREMENTS = ["onnxruntime==1.32.0", "onnx>=1.23,<1.24", "numpy>=2.4,<2.5"]
TAG_FEATURE_SERVICE = "feature_service"
TAG_FEATURE_SERVICE_VERSION = "feature_service_version"
TAG_DATA_FINGERPRINT = "data_fingerprint"
TAG_EVAL_FINGERPRINT = "eval_data_fingerprint"
TAG_GIT_COMMIT = "git_commit"
TAG_GATE_POLICY = "gate_policy"
TAG_PROMOTED_FROM = "promoted_from"  # on a champion version: the champion it replaced (rollback target)
TAG_NATIVE_MODEL_URI = "native_model_uri"  # on a version: the fitted native model logged on the same run
NATIVE_MODEL_NAME = "native"
# On a version: where its run holds a sample of its training inputs (parquet), drift monitoring's reference window.
TAG_DRIFT_REFERENCE = "drift_reference"
TAG_DRIFT_REFERENCE_ROWS = "drift_reference_rows"
DRIFT_REFERENCE_ARTIFACT = "drift_reference/reference.parquet"
MAX_DRIFT_REFERENCE_ROWS = 20_000  # a sample, not the training set: the drift check samples to this anyway


# One definition of "a client on this registry" and "where an alias points", shared with serving's loader.
_client = mlflow_client


def experiment_name(model_name: str) -> str:
    return f"learnloop-{model_name}"


def _experiment_id(client, settings: Settings, model_name: str) -> str:
    name = experiment_name(model_name)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return client.create_experiment(name, artifact_location=settings.mlflow_artifacts_dir.resolve().as_uri())


def git_commit() -> str:
    """The checkout's commit (suffixed ``-dirty`` when tracked files changed), or ``unknown`` outside git."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a training or evaluation frame (values, column names and order)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(column) for column in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def register_onnx_model(
    *,
    name: str,
    export: OnnxExport,
    metrics: Mapping[str, float],
    params: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    train_fingerprint: str,
    eval_fingerprint: str,
    artifacts: Mapping[str, Path] | None = None,
    json_artifacts: Mapping[str, Any] | None = None,
    description: str = "",
    gate_policy: GatePolicy | None = None,
    tags: Mapping[str, str] | None = None,
    native_model: Any = None,
    native_input_example: pd.DataFrame | None = None,
    reference_sample: pd.DataFrame | None = None,
    settings: Settings | None = None,
) -> ModelVersionInfo:
    """Log an ONNX export (parity ≤ 1e-5) with its evidence and register it as ``challenger``.

    ``reference_sample`` (at most ``MAX_DRIFT_REFERENCE_ROWS`` rows holding every input of the schema) is a sample of
    the training inputs for drift monitoring: logged on the run as ``drift_reference/reference.parquet`` and named by
    the version's ``drift_reference`` tag (read back with :func:`drift_reference`).

    ``native_model`` (a fitted scikit-learn classifier taking ``native_input_example``-shaped frames, i.e.
    ``models.api.model_frame`` of the schema's inputs) is logged on the same run as ``native`` (pyfunc =
    ``predict_proba``), and its URI is tagged on the version (``native_model_uri``): what ``mlflow models serve``
    is benchmarked on, and a way to audit the ONNX graph against the model it was exported from.
    """
    settings = settings or get_settings()
    if (native_model is None) != (native_input_example is None):
        raise InvalidInput("pass native_model and native_input_example together (the example fixes its signature)")
    extra_tags = dict(tags or {})
    import mlflow
    import mlflow.onnx
    import onnx

    if not export.parity_max_abs_diff <= 1e-5:
        raise InvalidInput(f"refusing to register '{name}': ONNX parity {export.parity_max_abs_diff:.3g} > 1e-5")
    if reference_sample is not None:
        missing = [f for f in export.schema.feature_names if f not in reference_sample.columns]
        if missing or reference_sample.empty or len(reference_sample) > MAX_DRIFT_REFERENCE_ROWS:
            raise InvalidInput(f"refusing to register '{name}': its drift reference sample must hold 1 to "
                               f"{MAX_DRIFT_REFERENCE_ROWS:,} rows of every model input (it has "
                               f"{len(reference_sample):,} rows; missing inputs {missing[:5]})")
        extra_tags[TAG_DRIFT_REFERENCE] = DRIFT_REFERENCE_ARTIFACT
        extra_tags[TAG_DRIFT_REFERENCE_ROWS] = str(len(reference_sample))
    client = _client(settings)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    experiment_id = _experiment_id(client, settings, name)
    all_metrics = {key: float(value) for key, value in metrics.items()}
    all_metrics["onnx_parity_max_abs_diff"] = float(export.parity_max_abs_diff)
    commit = git_commit()
    tags = {
        TAG_FEATURE_SERVICE: export.schema.feature_service or "",
        TAG_FEATURE_SERVICE_VERSION: export.schema.feature_service_version or "",
        TAG_DATA_FINGERPRINT: train_fingerprint,
        TAG_EVAL_FINGERPRINT: eval_fingerprint,
        TAG_GIT_COMMIT: commit,
        "mlflow.source.git.commit": commit,
        **extra_tags,
    }
    with tempfile.TemporaryDirectory() as scratch, mlflow.start_run(experiment_id=experiment_id, tags=tags):
        scratch_dir = Path(scratch)
        schema_path = scratch_dir / SCHEMA_FILE
        schema_path.write_text(json.dumps(export.schema.to_dict(), indent=2))
        preprocessing_path = scratch_dir / "preprocessing.json"
        preprocessing_path.write_text(json.dumps(dict(preprocessing or {}), indent=2, default=str))
        if params:
            mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        mlflow.log_metrics(all_metrics)
        for artifact_name, path in (artifacts or {}).items():
            mlflow.log_artifact(str(path), artifact_path=str(Path(artifact_name).parent) if "/" in artifact_name else None)
        for artifact_file, payload in (json_artifacts or {}).items():
            mlflow.log_dict(payload, artifact_file)
        mlflow.log_artifact(str(schema_path))
        mlflow.log_artifact(str(preprocessing_path))
        if reference_sample is not None:
            reference_path = scratch_dir / Path(DRIFT_REFERENCE_ARTIFACT).name
            reference_sample.to_parquet(reference_path, index=False)
            mlflow.log_artifact(str(reference_path), artifact_path=str(Path(DRIFT_REFERENCE_ARTIFACT).parent))
        info = mlflow.onnx.log_model(
            onnx.load_from_string(export.onnx_bytes),
            name="model",
            registered_model_name=name,
            pip_requirements=ONNX_PIP_REQUIREMENTS,
            extra_files=[str(schema_path), str(preprocessing_path)],
            metadata={"schema": export.schema.to_dict()},
            save_as_external_data=False,
        )
        if native_model is not None:
            tags[TAG_NATIVE_MODEL_URI] = _log_native_model(native_model, native_input_example, export)
            mlflow.set_tag(TAG_NATIVE_MODEL_URI, tags[TAG_NATIVE_MODEL_URI])
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if description:
        client.update_model_version(name, version, description=description)
    if gate_policy is not None:
        client.set_registered_model_tag(name, TAG_GATE_POLICY, json.dumps(asdict(gate_policy)))
    client.set_registered_model_alias(name, ModelAlias.challenger.value, version)
    return _version_info(client, name, version)


def drift_reference(info: ModelVersionInfo, *, settings: Settings | None = None) -> pd.DataFrame | None:
    """The training-input sample logged with version ``info`` (see ``register_onnx_model``), or None when the
    version logged none (registered before it was logged, or by a trainer that logs none)."""
    path = info.tags.get(TAG_DRIFT_REFERENCE)
    if not path or not info.run_id:
        return None
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = _client(settings).download_artifacts(info.run_id, path, scratch)
        except (MlflowException, OSError) as exc:
            raise NotFound(f"{info.name} v{info.version} names a drift reference ({path}) its run "
                           f"{info.run_id} does not hold: {exc}") from exc
        return pd.read_parquet(local)


def native_pip_requirements() -> list[str]:
    """Pinned requirements of a logged native scikit-learn model, read from this environment (never inferred:
    inference imports the model in a subprocess and can reach the network)."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for package in ("scikit-learn", "numpy", "pandas", "scipy", "skops", "learnloop"):
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # learnloop run from a checkout without an install: nothing to pin
            continue
    return pinned


def _log_native_model(model: Any, input_example: pd.DataFrame, export: OnnxExport) -> str:
    """Log the fitted scikit-learn model on the active run (skops; pyfunc returns ``predict_proba``) and return
    its ``models:/`` URI. The signature comes from the schema's inputs; its output is the [n, 2] probabilities.

    The classes it needs (e.g. ``models.api.PlattCalibratedClassifier``) are loaded from the ``learnloop`` package
    pinned in its requirements, which is why serving it needs ``--env-manager local`` in a learnloop environment.
    """
    import mlflow.sklearn
    import numpy as np
    import skops.io
    from mlflow.models import infer_signature

    from models.api import model_frame

    example = model_frame(input_example, export.schema.inputs)
    probabilities = np.asarray(model.predict_proba(example), dtype=np.float64)
    signature = infer_signature(example, probabilities)
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    info = mlflow.sklearn.log_model(
        model,
        name=NATIVE_MODEL_NAME,
        pyfunc_predict_fn="predict_proba",
        signature=signature,
        input_example=example,
        pip_requirements=native_pip_requirements(),
        skops_trusted_types=trusted,
        metadata={"schema": export.schema.to_dict(), "output": "predict_proba: [P(class 0), P(class 1)]"},
    )
    return info.model_uri


def stored_gate_policy(client, name: str) -> GatePolicy | None:
    """The gate a model's trainer registered with it (so `learnloop promote <name>` needs no model knowledge)."""
    from mlflow.exceptions import MlflowException

    try:
        stored = client.get_registered_model(name).tags.get(TAG_GATE_POLICY)
    except MlflowException:
        return None
    return GatePolicy(**json.loads(stored)) if stored else None


def _version_info(client, name: str, version: str) -> ModelVersionInfo:
    model_version = client.get_model_version(name, version)
    metrics: dict[str, float] = {}
    if model_version.run_id:
        metrics = dict(client.get_run(model_version.run_id).data.metrics)
    return ModelVersionInfo(
        name=name,
        version=str(model_version.version),
        aliases=sorted(model_version.aliases),
        run_id=model_version.run_id,
        created_at=datetime.fromtimestamp(model_version.creation_timestamp / 1000, tz=UTC),
        metrics=metrics,
        tags=dict(model_version.tags),
    )


def list_models(name: str | None = None, *, settings: Settings | None = None) -> list[ModelVersionInfo]:
    settings = settings or get_settings()
    client = _client(settings)
    names = [name] if name else sorted(model.name for model in client.search_registered_models())
    versions = []
    for model_name in names:
        found = client.search_model_versions(f"name='{model_name}'")
        if name and not found:
            raise NotFound(f"no registered model '{name}'; train it first (`{train_command(name)}`)")
        for model_version in sorted(found, key=lambda item: int(item.version)):
            versions.append(_version_info(client, model_name, str(model_version.version)))
    return versions


def evaluate_gate(
    policy: GatePolicy,
    challenger: ModelVersionInfo,
    champion: ModelVersionInfo | None,
) -> list[GateCheck]:
    """Every check of the gate with its evidence; promotion needs all of them to pass."""
    checks: list[GateCheck] = []
    new = challenger.metrics
    old = champion.metrics if champion else {}
    sign = 1.0 if policy.higher_is_better else -1.0

    if policy.metric not in new:
        checks.append(GateCheck("held_out_metric", False, f"challenger logged no '{policy.metric}'"))
    elif champion is None or policy.metric not in old:
        checks.append(GateCheck("held_out_metric", True,
                                f"{policy.metric}={new[policy.metric]:.4f}; no champion to compare with"))
    else:
        margin = sign * (new[policy.metric] - old[policy.metric])
        checks.append(GateCheck(
            "held_out_metric", margin >= -policy.tolerance,
            f"{policy.metric}: challenger {new[policy.metric]:.4f} vs champion {old[policy.metric]:.4f} "
            f"(v{champion.version}); allowed loss {policy.tolerance}",
        ))

    if policy.baseline_metric is not None:
        checks.append(_baseline_check(policy, new, sign))

    if champion is not None and policy.require_same_eval_data:
        same = challenger.tags.get(TAG_EVAL_FINGERPRINT) == champion.tags.get(TAG_EVAL_FINGERPRINT)
        checks.append(GateCheck(
            "same_held_out_data", same,
            "both versions were evaluated on the same held-out rows" if same else
            f"held-out data differ ({challenger.tags.get(TAG_EVAL_FINGERPRINT)} vs "
            f"{champion.tags.get(TAG_EVAL_FINGERPRINT)}); metrics are not comparable — retrain the champion's recipe "
            "on the same data or force with a reason",
        ))

    calibration = new.get(policy.calibration_metric)
    checks.append(GateCheck(
        "calibration", calibration is not None and calibration <= policy.max_calibration_error,
        f"{policy.calibration_metric}={calibration if calibration is None else round(calibration, 4)} "
        f"(bound {policy.max_calibration_error})",
    ))

    collapsed = []
    subgroup_keys = sorted(key for key in new if key.startswith(policy.subgroup_prefix))
    for key in subgroup_keys:
        value = new[key]
        if value < policy.min_subgroup_value:
            collapsed.append(f"{key}={value:.3f} < floor {policy.min_subgroup_value}")
        elif key in old and sign * (value - old[key]) < -policy.max_subgroup_drop:
            collapsed.append(f"{key}={value:.3f} vs champion {old[key]:.3f}")
    checks.append(GateCheck(
        "subgroups", not collapsed,
        f"{len(subgroup_keys)} subgroups checked" + (f"; collapsed: {', '.join(collapsed)}" if collapsed else ""),
    ))

    parity = new.get(policy.parity_metric)
    checks.append(GateCheck(
        "onnx_parity", parity is not None and parity <= policy.max_parity_diff,
        f"max |native - onnx| = {parity} (bound {policy.max_parity_diff})",
    ))
    return checks


def _baseline_check(policy: GatePolicy, new: dict[str, float], sign: float) -> GateCheck:
    """The challenger against the rule served without a model, on its own held-out rows."""
    value, baseline = new.get(policy.metric), new.get(policy.baseline_metric)
    if value is None or baseline is None:
        return GateCheck("beats_fallback", False,
                         f"challenger logged no '{policy.metric}' or no '{policy.baseline_metric}' to compare")
    margin = sign * (value - baseline)
    return GateCheck(
        "beats_fallback", margin >= policy.baseline_margin,
        f"{policy.metric}: challenger {value:.4f} vs the fallback it replaces ({policy.baseline_metric}) "
        f"{baseline:.4f}; required margin {policy.baseline_margin}",
    )


def _log_decision(client, run_id: str | None, decision: PromotionDecision) -> None:
    if not run_id:
        return
    stamp = decision.decided_at.replace(":", "").replace("-", "")
    client.log_dict(run_id, decision.to_dict(), f"promotion/{stamp}-{decision.outcome.value}.json")
    client.set_tag(run_id, "promotion.outcome", decision.outcome.value)
    client.set_tag(run_id, "promotion.decided_at", decision.decided_at)
    if decision.force_reason:
        client.set_tag(run_id, "promotion.force_reason", decision.force_reason)


def promote(
    name: str,
    *,
    policy: GatePolicy | None = None,
    force_reason: str | None = None,
    settings: Settings | None = None,
) -> PromotionDecision:
    settings = settings or get_settings()
    if force_reason is not None and not force_reason.strip():
        raise InvalidInput("--force needs a non-empty --reason (it is logged on the run)")
    client = _client(settings)
    policy = policy or stored_gate_policy(client, name) or GatePolicy()
    challenger_version = alias_version(client, name, ModelAlias.challenger)
    if challenger_version is None:
        raise NotFound(f"model '{name}' has no challenger; train one first (`{train_command(name)}`)")
    champion_version = alias_version(client, name, ModelAlias.champion)
    if champion_version == challenger_version:
        raise Conflict(f"version {challenger_version} of '{name}' is already champion; train a new challenger")
    challenger = _version_info(client, name, challenger_version)
    champion = _version_info(client, name, champion_version) if champion_version else None
    checks = evaluate_gate(policy, challenger, champion)
    passed = all(check.passed for check in checks)
    if passed:
        outcome = PromotionOutcome.promoted
    elif force_reason:
        outcome = PromotionOutcome.forced
    else:
        outcome = PromotionOutcome.refused
    if outcome is not PromotionOutcome.refused:
        client.set_registered_model_alias(name, ModelAlias.champion.value, challenger_version)
        client.set_model_version_tag(name, challenger_version, TAG_PROMOTED_FROM, champion_version or "")
    checks.append(GateCheck("policy", True, json.dumps(asdict(policy))))  # the evidence names the bar it used
    decision = PromotionDecision(
        model_name=name,
        outcome=outcome,
        challenger_version=challenger_version,
        previous_champion_version=champion_version,
        champion_version=challenger_version if outcome is not PromotionOutcome.refused else champion_version,
        checks=checks,
        force_reason=force_reason,
        decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _log_decision(client, challenger.run_id, decision)
    return decision


def rollback(name: str, *, to_version: str | None = None, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    client = _client(settings)
    current = alias_version(client, name, ModelAlias.champion)
    if current is None:
        raise NotFound(f"model '{name}' has no champion to roll back")
    target = to_version or client.get_model_version(name, current).tags.get(TAG_PROMOTED_FROM) or None
    if not target:
        raise Conflict(f"champion v{current} of '{name}' replaced no earlier champion; pass the version to restore")
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, target)
    except MlflowException as exc:
        raise NotFound(f"model '{name}' has no version {target}") from exc
    client.set_registered_model_alias(name, ModelAlias.champion.value, target)
    run_id = client.get_model_version(name, current).run_id
    if run_id:
        client.set_tag(run_id, "promotion.rolled_back_to", target)
    return target
