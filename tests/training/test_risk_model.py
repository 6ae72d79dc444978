"""The at-risk pipeline end to end on a small synthetic slice, behavioural model tests, and training-side
leakage traps."""

from __future__ import annotations

import numpy as np
import pytest

from learnloop.errors import InvalidInput
from models.api import OnnxClassifier
from training._risk import (
    NON_FEATURE_COLUMNS,
    RiskRecipe,
    monotonic_directions,
    predict_native,
    risk_features,
    split_by_presentation,
)
from training.api import PromotionOutcome, list_models, load_champion, promote, train_risk

SMALL = RiskRecipe(max_iter=40, min_samples_leaf=20)


@pytest.fixture(scope="module")
def frame(synthetic_risk_frame):
    return synthetic_risk_frame()


@pytest.fixture(scope="module")
def fitted_run(frame):
    return train_risk(frame=frame, recipe=SMALL, register=False)


def test_train_register_promote_refuse_worse_and_serve_champion(registry_settings, frame):
    first = train_risk(frame=frame, recipe=SMALL)
    assert first.version.aliases == ["challenger"]
    assert first.evaluation["auc_active"] > 0.7
    assert first.version.tags["feature_service"] == "student_risk_v2"
    promoted = promote("risk")
    assert promoted.outcome is PromotionOutcome.promoted, [c for c in promoted.checks if not c.passed]

    # A deliberately worse challenger: same held-out rows, but trained on shuffled labels.
    shuffled = frame.copy()
    train_rows = shuffled["code_presentation"] != "2014J"
    shuffled.loc[train_rows, "label"] = np.random.default_rng(1).permutation(shuffled.loc[train_rows, "label"])
    worse = train_risk(frame=shuffled, recipe=RiskRecipe(max_iter=40, min_samples_leaf=20, calibrate=False))
    assert worse.evaluation["auc_active"] < first.evaluation["auc_active"] - 0.1
    decision = promote("risk")
    assert decision.outcome is PromotionOutcome.refused
    assert "held_out_metric" in {check.name for check in decision.checks if not check.passed}

    champion = load_champion("risk")
    assert champion.version == first.version.version
    assert champion.schema.feature_names == risk_features()
    held_out = frame[frame["code_presentation"] == "2014J"]
    onnx_risk = OnnxClassifier(champion.onnx_bytes, champion.schema).predict_proba(held_out)
    np.testing.assert_allclose(onnx_risk, predict_native(first.fitted, held_out), atol=1e-5)
    listed = {info.version: info.aliases for info in list_models("risk")}
    assert listed == {first.version.version: ["champion"], worse.version.version: ["challenger"]}


def _onnx_model(run, synthetic_risk_frame):
    from models.api import ModelSchema, export_sklearn_classifier

    held_out = synthetic_risk_frame(students_per_course=10, seed=5)
    export = export_sklearn_classifier(run.fitted.estimator, held_out, ModelSchema(inputs=run.fitted.inputs))
    return OnnxClassifier(export.onnx_bytes, export.schema), held_out


def test_more_missed_assessments_or_fewer_clicks_never_lower_the_risk(fitted_run, synthetic_risk_frame):
    model, rows = _onnx_model(fitted_run, synthetic_risk_frame)
    base = model.predict_proba(rows)
    for extra in (1, 3):
        assert np.all(model.predict_proba(rows.assign(n_missed=rows["n_missed"] + extra)) >= base - 1e-6)
    clicks = [name for name in fitted_run.features if name.startswith("clicks_") and "cohort" not in name]
    fewer = rows.copy()
    fewer[clicks] = fewer[clicks] * 0.3
    fewer["active_days_28d"] = fewer["active_days_28d"] * 0.3
    assert np.all(model.predict_proba(fewer) >= base - 1e-6)
    # The constraint is real, not an accident of this data: it is declared on exactly these features.
    directions = monotonic_directions(fitted_run.features)
    assert directions["n_missed"] == 1 and directions["clicks_total_cum"] == -1
    assert fitted_run.fitted.slope > 0  # calibration keeps the order


def test_identifiers_do_not_change_the_risk(fitted_run, synthetic_risk_frame):
    model, rows = _onnx_model(fitted_run, synthetic_risk_frame)
    renamed = rows.assign(id_student=rows["id_student"] + 987_654,
                          student_course="x" + rows["student_course"], code_presentation="2099J")
    np.testing.assert_array_equal(model.predict_proba(renamed), model.predict_proba(rows))
    assert not set(model.schema.feature_names) & NON_FEATURE_COLUMNS


def test_presentations_are_held_out_whole(frame):
    train, test = split_by_presentation(frame, ("2013B", "2013J", "2014B"), ("2014J",))
    assert set(train["code_presentation"]) == {"2013B", "2013J", "2014B"}
    assert set(test["code_presentation"]) == {"2014J"}
    assert not set(train["student_course"]) & set(test["student_course"])
    with pytest.raises(InvalidInput, match="both train and test"):
        split_by_presentation(frame, ("2013B", "2014J"), ("2014J",))
    # Courses (module-presentations) work as keys too: the click protocol trains on AAA 2013J alone.
    click_train, click_test = split_by_presentation(frame, ("AAA-2013J",), ("AAA-2014J",))
    assert set(click_train["code_module"]) == {"AAA"} and set(click_test["code_presentation"]) == {"2014J"}


def test_a_feature_service_exposing_ids_or_outcomes_is_refused(monkeypatch):
    import features.api

    monkeypatch.setattr(features.api, "feature_names", lambda service: ["n_missed", "final_result"])
    with pytest.raises(InvalidInput, match="final_result"):
        risk_features()


def test_evaluation_reports_every_week_and_subgroup(fitted_run):
    evaluation = fitted_run.evaluation
    assert list(evaluation["auc_active_by_week"]) == ["5", "10", "15", "end"]
    assert all(0.5 < value <= 1 for value in evaluation["auc_active_by_week"].values())
    assert {"gender:F", "gender:M"} <= set(evaluation["subgroups"])
    assert 0 <= evaluation["brier"] < 0.25 and evaluation["ece_active"] < 0.1


def test_v1_still_trains_and_records_the_service_it_read(synthetic_risk_frame):
    # Serving reads the service name recorded with the model, so a v1 model must say v1 and take v1's inputs.
    from features.api import feature_names

    v1_frame = synthetic_risk_frame(students_per_course=40, service="student_risk_v1")
    run = train_risk(frame=v1_frame, recipe=RiskRecipe(max_iter=20, min_samples_leaf=20,
                                                      feature_service="student_risk_v1"), register=False)
    assert [item.name for item in run.fitted.inputs] == feature_names("student_risk_v1")
    assert "submitted_share" not in run.features and run.evaluation["auc_active"] > 0.6



def test_capacity_is_chosen_on_training_presentations_only(frame):
    from training._risk import select_capacity

    train, test = split_by_presentation(frame, ("2013B", "2013J", "2014B"), ("2014J",))
    grid = ((1, 20, 2), (40, 20, 15))  # one boosting step of a stump cannot rank as well as 40 trees
    chosen, scores = select_capacity(train, risk_features(train), RiskRecipe(capacity_grid=grid))
    assert set(scores) == {"1/20/2", "40/20/15"} and scores["40/20/15"] > scores["1/20/2"]
    assert (chosen.max_iter, chosen.min_samples_leaf, chosen.max_leaf_nodes) == (40, 20, 15)
    # Without a grid the recipe is used as given.
    assert select_capacity(train, risk_features(train), SMALL) == (SMALL, {})
    run = train_risk(frame=frame, recipe=RiskRecipe(capacity_grid=grid), register=False)
    assert run.fitted.recipe.max_iter == 40 and run.fitted.capacity_scores == scores


def test_train_risk_without_registering_says_so(frame, tmp_path):
    """`learnloop train risk --no-register` printed "risk vNone []: … by week {'5': 0.95, …}"."""
    import typer
    from typer.testing import CliRunner

    from training import cli

    root = typer.Typer()
    groups = {name: typer.Typer() for name in ("train", "eval", "models")}
    cli.register(groups=groups, root=root)
    root.add_typer(groups["train"], name="train")
    frame.to_parquet(tmp_path / "risk.parquet")

    out = CliRunner().invoke(root, ["train", "risk", "--training-set", str(tmp_path / "risk.parquet"),
                                    "--fixed-capacity", "--max-iter", "20", "--no-register"])

    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("risk (not registered: --no-register): active AUC ") and "None" not in out.stdout
    assert "(by week: 5 0." in out.stdout and "{" not in out.stdout
