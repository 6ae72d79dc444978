"""The model-agnostic registry: challenger on register, gated promotion, forced promotion, rollback, champion load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from learnloop.errors import Conflict, InvalidInput, NotFound
from models.api import ModelSchema, OnnxClassifier, export_sklearn_classifier, infer_inputs, model_frame
from training.api import (
    GatePolicy,
    PromotionOutcome,
    list_models,
    load_champion,
    promote,
    register_onnx_model,
    rollback,
)


@pytest.fixture(scope="module")
def toy_export():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"n_missed": rng.integers(0, 5, 400).astype(float), "clicks": rng.gamma(2, 20, 400)})
    labels = (frame["n_missed"] - frame["clicks"] / 30 + rng.normal(0, 1, 400) > 0).astype(int)
    inputs = infer_inputs(frame, ["n_missed", "clicks"])
    schema = ModelSchema(inputs=inputs, feature_service="toy_v1", feature_service_version="1")
    model = LogisticRegression().fit(model_frame(frame, inputs), labels)
    return frame, export_sklearn_classifier(model, frame, schema)


GOOD = {"auc": 0.80, "ece": 0.02, "subgroup_auc.gender:F": 0.79, "subgroup_auc.gender:M": 0.81}


def _register(export, metrics, *, eval_fingerprint="heldout-1"):
    return register_onnx_model(name="toy", export=export, metrics=metrics, params={"learner": "logreg"},
                               preprocessing={"note": "none"}, train_fingerprint="train-1",
                               eval_fingerprint=eval_fingerprint)


def test_register_promote_refuse_force_rollback_and_load(registry_settings, toy_export):
    frame, export = toy_export
    first = _register(export, GOOD)
    assert first.aliases == ["challenger"]
    assert first.tags["feature_service"] == "toy_v1" and first.tags["data_fingerprint"] == "train-1"
    assert first.tags["git_commit"]
    with pytest.raises(NotFound):
        load_champion("toy")

    decision = promote("toy")
    assert decision.outcome is PromotionOutcome.promoted and decision.champion_version == first.version
    with pytest.raises(Conflict):
        promote("toy")

    champion = load_champion("toy")
    assert champion.version == first.version
    assert champion.schema.feature_names == ["n_missed", "clicks"]
    assert champion.schema.feature_service == "toy_v1"
    scores = OnnxClassifier(champion.onnx_bytes, champion.schema).predict_proba(frame.head(20))
    assert scores.shape == (20,) and np.all((scores > 0) & (scores < 1))

    worse = _register(export, {**GOOD, "auc": 0.70})
    refused = promote("toy")
    assert refused.outcome is PromotionOutcome.refused
    assert refused.champion_version == first.version
    failed = {check.name for check in refused.checks if not check.passed}
    assert failed == {"held_out_metric"}
    assert load_champion("toy").version == first.version

    # The decision and its evidence are logged on the challenger's run.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry_settings.mlflow_uri)
    run = client.get_run(worse.run_id)
    assert run.data.tags["promotion.outcome"] == "refused"
    logged = [item.path for item in client.list_artifacts(worse.run_id, "promotion")]
    assert len(logged) == 1
    evidence = json.loads(Path(client.download_artifacts(worse.run_id, logged[0])).read_text())
    assert evidence["outcome"] == "refused" and not evidence["gate_passed"]

    with pytest.raises(InvalidInput):
        promote("toy", force_reason="  ")
    forced = promote("toy", force_reason="incident 42: roll forward despite the gate")
    assert forced.outcome is PromotionOutcome.forced
    assert load_champion("toy").version == worse.version
    assert client.get_run(worse.run_id).data.tags["promotion.force_reason"].startswith("incident 42")

    assert rollback("toy") == first.version
    assert load_champion("toy").version == first.version
    versions = {info.version: info for info in list_models("toy")}
    assert versions[first.version].aliases == ["champion"]
    assert versions[worse.version].aliases == ["challenger"]
    assert versions[worse.version].metrics["auc"] == pytest.approx(0.70)


def test_gate_checks_each_condition(registry_settings, toy_export):
    _, export = toy_export
    champion = _register(export, GOOD)
    promote("toy")
    cases = [  # each challenger fails exactly one check; refused ones leave the champion in place
        ({**GOOD, "ece": 0.2}, "heldout-1", {"calibration"}),
        ({**GOOD, "subgroup_auc.gender:F": 0.55}, "heldout-1", {"subgroups"}),
        ({**GOOD, "subgroup_auc.gender:M": 0.70}, "heldout-1", {"subgroups"}),
        (GOOD, "heldout-2", {"same_held_out_data"}),
        ({**GOOD, "auc": 0.795}, "heldout-1", set()),  # within the tolerance: promoted
    ]
    for metrics, eval_fingerprint, failing in cases:
        _register(export, metrics, eval_fingerprint=eval_fingerprint)
        decision = promote("toy", policy=GatePolicy(tolerance=0.01))
        assert {check.name for check in decision.checks if not check.passed} == failing, metrics
        if failing:
            assert decision.outcome is PromotionOutcome.refused
            assert decision.champion_version == champion.version
        else:
            assert decision.outcome is PromotionOutcome.promoted
            assert load_champion("toy").version == decision.challenger_version


def test_a_first_version_that_does_not_beat_the_fallback_rule_is_refused(registry_settings, toy_export):
    """With no champion, the served answer is the fallback rule: a model worse than it must not replace it."""
    _, export = toy_export
    policy = GatePolicy(tolerance=0.01, baseline_metric="auc_fallback")
    _register(export, {**GOOD, "auc_fallback": 0.81})
    decision = promote("toy", policy=policy)
    assert decision.outcome is PromotionOutcome.refused and decision.champion_version is None
    (check,) = [check for check in decision.checks if not check.passed]
    assert check.name == "beats_fallback" and "0.8000" in check.detail and "0.8100" in check.detail
    _register(export, GOOD)  # logged no fallback figure: nothing to show it beats the rule
    assert promote("toy", policy=policy).outcome is PromotionOutcome.refused
    _register(export, {**GOOD, "auc_fallback": 0.79})
    assert promote("toy", policy=policy).outcome is PromotionOutcome.promoted


def test_registration_refuses_an_export_without_parity(registry_settings, toy_export):
    from dataclasses import replace

    _, export = toy_export
    with pytest.raises(InvalidInput):
        _register(replace(export, parity_max_abs_diff=1e-3), GOOD)
    with pytest.raises(NotFound):
        list_models("toy")


def test_a_missing_model_names_the_command_that_trains_it(registry_settings):
    """The hint used to be `learnloop train <name>`, which exists for risk and recommender only: an operator asking
    for an essay grader was told to run `learnloop train essay_grader_p1`."""
    from training.data import train_command

    with pytest.raises(NotFound, match=r"`learnloop train essays --prompt 1 --register`"):
        list_models("essay_grader_p1")
    with pytest.raises(NotFound, match=r"`learnloop train risk`"):
        promote("risk")
    assert train_command("recommender") == "learnloop train recommender"


def test_promote_and_rollback_commands_refresh_the_operator_page(registry_settings, toy_export):
    """/operator shows aliases from a snapshot that only `learnloop drift check` took: after the demo, or after
    `learnloop promote`, operators read "Aliases: none" or the previous champion."""
    import typer
    from typer.testing import CliRunner

    from pipelines.monitoring._operator import operator_view
    from training import cli

    root = typer.Typer()
    groups = {name: typer.Typer() for name in ("train", "eval", "models")}
    cli.register(groups=groups, root=root)
    root.add_typer(groups["models"], name="models")

    def aliases() -> dict:
        view = operator_view(settings=registry_settings, list_models=None, report_url=lambda _path: None)
        return {row["name"]: row["aliases"] for row in view["models"]}

    _, export = toy_export
    first = _register(export, GOOD)
    assert CliRunner().invoke(root, ["promote", "toy"]).exit_code == 0
    assert aliases()["toy"]["champion"] == first.version
    second = _register(export, GOOD, eval_fingerprint="heldout-1")
    assert CliRunner().invoke(root, ["promote", "toy"]).exit_code == 0
    assert aliases()["toy"]["champion"] == second.version
    out = CliRunner().invoke(root, ["models", "rollback", "toy"])
    assert out.exit_code == 0, out.output
    assert aliases()["toy"]["champion"] == first.version


def test_models_list_shows_each_kind_of_model_its_own_metric(registry_settings, toy_export):
    """The table had risk-only columns (auc_active, auc, ece_active, brier): the recommender and essay graders,
    which log ndcg_at_10 and qwk, read '—' everywhere and could not be compared."""
    import typer
    from typer.testing import CliRunner

    from training import cli

    root = typer.Typer()
    groups = {name: typer.Typer() for name in ("train", "eval", "models")}
    cli.register(groups=groups, root=root)
    root.add_typer(groups["models"], name="models")
    _, export = toy_export
    _register(export, GOOD)
    register_onnx_model(name="essay_grader_p9", export=export, metrics={"qwk": 0.71, "interval_coverage_gap": 0.02},
                        params={}, train_fingerprint="t", eval_fingerprint="e")

    out = CliRunner().invoke(root, ["models", "list"], env={"COLUMNS": "200"})

    assert out.exit_code == 0, out.output
    assert "qwk 0.7100" in out.output and "interval_coverage_gap 0.0200" in out.output
    assert "auc 0.8000" in out.output and "ece 0.0200" in out.output


def test_a_refused_first_promotion_says_there_is_no_champion(registry_settings, toy_export):
    """`learnloop promote recommender` on the demo (its first ranker does not beat the fallback) ended with
    "champion: vNone"."""
    import typer
    from typer.testing import CliRunner

    from training import cli

    root = typer.Typer()
    groups = {name: typer.Typer() for name in ("train", "eval", "models")}
    cli.register(groups=groups, root=root)
    root.add_typer(groups["models"], name="models")
    _, export = toy_export
    register_onnx_model(name="toy", export=export, metrics={**GOOD, "ece": 0.5}, params={}, train_fingerprint="t",
                        eval_fingerprint="e")

    out = CliRunner().invoke(root, ["promote", "toy"], env={"COLUMNS": "200"})

    assert out.exit_code == 1, out.output
    assert "vNone" not in out.output and "champion: none (no version of 'toy' is champion)" in out.output
