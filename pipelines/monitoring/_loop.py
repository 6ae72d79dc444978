"""The real retrain/promote callables for :func:`pipelines.monitoring.api.handle_drift`, backed by
``training.api`` (imported only here and in the CLI, never by ``api.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

from learnloop.errors import Unavailable
from learnloop.settings import Settings
from pipelines.monitoring.data import GateDecision, ModelStatus, TriggerReason

log = logging.getLogger(__name__)


def registry_models(settings: Settings) -> list[ModelStatus]:
    """Every registered model with its aliases → versions (from ``training.api.list_models``)."""
    from training.api import list_models

    by_name: dict[str, ModelStatus] = {}
    for info in list_models(settings=settings):
        status = by_name.setdefault(info.name, ModelStatus(name=info.name, aliases={}, latest_versions=[]))
        status.latest_versions.append(str(info.version))
        for alias in info.aliases:
            status.aliases[alias] = str(info.version)
    return list(by_name.values())


def training_promote(settings: Settings):
    """``promote(model_name) -> GateDecision`` through ``training.api.promote`` (the gate, never forced)."""

    def promote(model_name: str) -> GateDecision:
        from training.api import PromotionOutcome
        from training.api import promote as _promote

        decision = _promote(model_name, settings=settings)
        failed = [f"{check.name}: {check.detail}" for check in decision.checks if not check.passed]
        return GateDecision(
            promoted=decision.outcome is PromotionOutcome.promoted,
            reason="; ".join(failed) if failed else "every gate check passed",
            challenger_version=str(decision.challenger_version),
            champion_version=None if decision.champion_version is None else str(decision.champion_version),
        )

    return promote


def training_retrain(settings: Settings):
    """``retrain(model_name, reasons) -> challenger version`` through ``training.api``'s training pipelines
    (the same recipe as ``learnloop train``; the new version is registered as ``challenger``)."""

    def retrain(model_name: str, reasons: list[TriggerReason]) -> str:
        from training import api as training_api
        from training.data import train_command

        # train_risk returns a RiskRun whose ``version`` is the registered ModelVersionInfo.
        pipelines = {"risk": lambda: training_api.train_risk(settings=settings).version.version,
                     "recommender": lambda: _retrain_recommender(settings)}
        if model_name not in pipelines:
            raise Unavailable(f"no automatic retraining for {model_name}; retrain it by hand "
                              f"(`{train_command(model_name)}`)")
        log.warning("retraining %s because of %s", model_name, ", ".join(reasons))
        return str(pipelines[model_name]())

    return retrain


def _retrain_recommender(settings: Settings) -> str:
    """``learnloop train recommender --no-promote`` (the gate is the trigger's next step), with ``--platform``
    when this installation has a platform database: the drift was seen in the platform's traffic, so its own
    courses' opens belong in the new ranker's training rows (and in its reference sample)."""
    from recommender.cli import train_and_promote

    platform = _has_platform_database(settings)
    if not platform:
        log.warning("retraining the recommender on OULAD only: no platform database at %s", settings.sqlalchemy_url)
    report = train_and_promote(platform=platform, register=True, promote=False, settings=settings)
    return str(report["version"])


def _has_platform_database(settings: Settings) -> bool:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        return bool(database) and database != ":memory:" and Path(database).is_file()
    return True  # a server database: reading it is part of the run (a failure alerts operators)
