"""What the model service serves, model by model (``POST /admin/models`` and ``/admin/reload``).

Three kinds of model answer requests here, each loaded its own way: the registry champions the
``ChampionWatcher`` follows (``risk``), the recommender's learned ranker (``recommender.api``: resolved at the
first treatment-arm list and every few minutes after) and one essay grader per prompt (``grading_nlp.api``: files
under ``<data dir>/grading``, loaded at the prompt's first essay). Operators read this list to see which version
of each the answering worker holds and what is missing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from learnloop.settings import Settings
from serving.data import ServedModel, ServedModelStatus

_ROUTES = {"risk": "/predict_risk"}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def champion_models(watcher) -> list[ServedModel]:
    """The registry champions the watcher follows: loaded, degraded (a newer champion failed to load and the
    loaded one is kept) or unavailable (none loaded, with why)."""
    from models.data import ModelAlias

    alias = ModelAlias.champion.value
    served = []
    for name in watcher.model_names:
        model = watcher.models.get(name)
        error = watcher.last_error.get(name)
        common = {"name": name, "route": _ROUTES.get(name, f"/predict_{name}"), "alias": alias,
                  "source": f"models:/{name}@{alias}"}
        if model is None:
            served.append(ServedModel(**common, status=ServedModelStatus.unavailable,
                                      detail=error or f"no version of {name} holds the {alias} alias; train and "
                                                      f"promote one (`learnloop train {name}`, then `learnloop promote {name}`)"))
            continue
        served.append(ServedModel(
            **common, status=ServedModelStatus.degraded if error else ServedModelStatus.loaded, version=model.version,
            n_inputs=len(model.schema.inputs), loaded_at=_iso(model.loaded_at),
            detail=f"still serving v{model.version}: the current {alias} did not load ({error})" if error else None))
    return served


def ranker_model(settings: Settings, *, resolve: bool = False) -> ServedModel:
    """The recommender's learned ranker (treatment arm of ``/recommend``)."""
    from recommender.api import ranker_status

    ranker = ranker_status(settings=settings, resolve=resolve)
    common = {"name": ranker.model_name, "route": "/recommend", "alias": ranker.alias,
              "source": f"models:/{ranker.model_name}@{ranker.alias}"}
    if not ranker.resolved:
        return ServedModel(**common, status=ServedModelStatus.not_loaded,
                           detail="looked up at the first treatment-arm /recommend (POST /admin/reload looks now)")
    if ranker.version is None:
        return ServedModel(**common, status=ServedModelStatus.unavailable,
                           detail=f"{ranker.reason}; treatment lists use popularity within course and week")
    return ServedModel(**common, status=ServedModelStatus.degraded if ranker.reason else ServedModelStatus.loaded,
                       version=ranker.version, n_inputs=ranker.n_inputs, loaded_at=ranker.loaded_at,
                       detail=ranker.reason)


def essay_graders(settings: Settings) -> list[ServedModel]:
    """One essay grader per prompt folder: loaded, not loaded yet, degraded (no ONNX head) or unavailable."""
    from grading_nlp.api import essay_grader_status

    served = []
    for grader in essay_grader_status(settings=settings):
        if not grader.servable:
            status = ServedModelStatus.unavailable
        elif grader.problem and grader.loaded:
            status = ServedModelStatus.degraded
        else:
            status = ServedModelStatus.loaded if grader.loaded else ServedModelStatus.not_loaded
        detail = grader.problem
        if status is ServedModelStatus.not_loaded:
            detail = "; ".join(filter(None, [f"loads at the first essay of prompt {grader.prompt_id}", detail]))
        if grader.registered_version:
            detail = "; ".join(filter(None, [detail, f"also registered as {grader.name} v{grader.registered_version}"
                                                     " (served from its folder, not the registry)"]))
        served.append(ServedModel(
            name=grader.name, route="/grade_essay", status=status, version=grader.model_version,
            source=grader.location, trained_on=grader.trained_on, trained_at=grader.trained_at,
            n_inputs=grader.n_inputs, detail=detail))
    return served


def served_models(*, watcher, settings: Settings, resolve: bool = False) -> list[ServedModel]:
    """Every model the service serves: the champions, the ranker, then the essay graders by prompt."""
    return [*champion_models(watcher), ranker_model(settings, resolve=resolve), *essay_graders(settings)]
