"""Read the champion of a registered model from the MLflow registry (``models:/<name>@champion``).

Lives in ``models`` (not ``training``) so that serving can load its model without importing training code.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from learnloop.errors import NotFound, Unavailable
from learnloop.settings import Settings, get_settings
from models.data import ONNX_FILE, SCHEMA_FILE, ChampionModel, ModelAlias, ModelSchema


def mlflow_client(settings: Settings):
    """An MlflowClient on the configured tracking/registry URI (set per call, never at import)."""
    from mlflow import MlflowClient

    settings.ensure_dirs()
    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def alias_version(client, name: str, alias: ModelAlias) -> str | None:
    """The version an alias points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias.value).version)
    except MlflowException:
        return None


def load_champion_onnx(name: str, *, settings: Settings | None = None) -> ChampionModel:
    """Download ``models:/<name>@champion`` once into the cache dir and return its ONNX bytes, schema, version."""
    settings = settings or get_settings()
    client = mlflow_client(settings)
    version = alias_version(client, name, ModelAlias.champion)
    if version is None:
        raise NotFound(f"model '{name}' has no champion; train it and run `learnloop promote {name}`")
    local_dir = settings.cache_dir / "registry" / name / version
    if not (local_dir / ONNX_FILE).is_file():
        import mlflow
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        local_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=local_dir.parent))
        # `models:/` URIs are resolved with MLflow's process-wide registry URI whatever is passed below
        # (MLflow 3.17), so point the process at this installation's registry before downloading.
        mlflow.set_tracking_uri(settings.mlflow_uri)
        mlflow.set_registry_uri(settings.mlflow_uri)
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}@{ModelAlias.champion.value}", dst_path=str(staging),
                tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri,
            )
        except MlflowException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise Unavailable(f"cannot download the champion of '{name}' (version {version}): {exc}") from exc
        found = list(staging.rglob(ONNX_FILE))
        if not found:
            shutil.rmtree(staging, ignore_errors=True)
            raise Unavailable(f"version {version} of '{name}' holds no {ONNX_FILE}; re-register it with training.api")
        shutil.rmtree(local_dir, ignore_errors=True)
        found[0].parent.rename(local_dir)  # atomic publish: readers never see a half-downloaded model
        shutil.rmtree(staging, ignore_errors=True)
    schema_path = next(iter(local_dir.rglob(SCHEMA_FILE)), None)
    if schema_path is None:
        raise Unavailable(f"version {version} of '{name}' holds no {SCHEMA_FILE}; re-register it with training.api")
    schema = ModelSchema.from_dict(json.loads(schema_path.read_text()))
    return ChampionModel(onnx_bytes=(local_dir / ONNX_FILE).read_bytes(), schema=schema, version=version)
