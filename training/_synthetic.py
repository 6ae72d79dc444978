"""A small frame shaped exactly like ``pipelines.api.build_risk_training_set`` (contract columns + every
feature of a risk FeatureService, ``student_risk_v2`` by default) with real signal: low engagement raises missed assessments, lowers clicks and
raises the chance of Withdrawn/Fail. For notebooks, tests and demos that must run in seconds without building
the feature store; never for reported figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

WEEK_DAYS = {"5": 35, "10": 70, "15": 105, "end": 240}


def synthetic_risk_frame(*, students_per_course: int = 120, seed: int = 0,
                         service: str = "student_risk_v2") -> pd.DataFrame:
    """A small risk training set with the contract's columns (pipelines.api.build_risk_training_set) and real
    signal: missed assessments, low activity and low marks raise the chance of Withdrawn/Fail. Used where building
    the Feast store would cost minutes."""
    from features.api import feature_names

    rng = np.random.default_rng(seed)
    extra = np.random.default_rng(seed + 1)  # v2-only draws: the v1 columns stay exactly as before
    names = feature_names(service)
    rows = []
    student_id = 1000
    for presentation in ("2013B", "2013J", "2014B", "2014J"):
        for module in ("AAA", "BBB"):
            has_clicks = module == "AAA"
            for _ in range(students_per_course):
                student_id += 1
                engagement = rng.normal()
                background = rng.normal()
                risk_logit = -2.5 * engagement - 1.2 * background
                label = int(rng.random() < 1 / (1 + np.exp(-risk_logit)))
                gender = rng.choice(["F", "M"])
                age_band = rng.choice(["0-35", "35-55"])
                disability = rng.choice(["N", "Y"], p=[0.8, 0.2])
                imd_band = rng.choice(["0-10%", "10-20", "50-60%", None], p=[0.3, 0.3, 0.35, 0.05])
                unregister_day = 60 + 40 * engagement if label and engagement < -0.8 else np.inf
                for week, day in WEEK_DAYS.items():
                    progress = day / 240
                    due = int(round(day / 20))
                    missed = int(min(due, rng.binomial(due, 1 / (1 + np.exp(3 * engagement + 1)))))
                    clicks = max(0.0, (40 + 25 * engagement + rng.normal(0, 4)) * day / 7) if has_clicks else np.nan
                    features = dict.fromkeys(names, np.nan)
                    features.update({
                        "registration_day": float(-rng.integers(0, 120)), "days_registered": float(day + 50),
                        "is_unregistered": float(day >= unregister_day), "num_of_prev_attempts": 0.0,
                        "studied_credits": float(rng.choice([60, 120])), "education_level": float(rng.integers(0, 4)),
                        "imd_decile": float(rng.integers(0, 10)), "age_level": 0.0,
                        "has_disability": float(disability == "Y"), "n_due": float(due), "n_missed": float(missed),
                        "n_submitted": float(due - missed), "score_mean": float(np.clip(65 - 10 * background
                                                                                         + rng.normal(0, 10), 0, 100))
                        if due > missed else np.nan,
                        "has_click_data": float(has_clicks), "course_has_click_data": float(has_clicks),
                        "course_day": float(day), "course_progress": progress, "course_length": 240.0,
                    })
                    submitted = due - missed
                    v2 = {  # submission behaviour (student_risk_v2); dropped below when the service lacks it
                        "due_weight": float(due * 10), "submitted_weight": float(submitted * 10),
                        "n_on_time": float(max(0, submitted - extra.binomial(submitted, 0.2))),
                        "n_ahead": float(extra.binomial(1, 1 / (1 + np.exp(-engagement)))),
                        "submitted_share": submitted / due if due else np.nan,
                        "days_early_mean": float(2 + 2 * engagement + extra.normal()) if submitted else np.nan,
                        "days_since_last_submission": float(extra.integers(0, 20)) if submitted else np.nan,
                        "submitted_vs_cohort": float(submitted - 0.8 * due),
                        "module_prior_presentations": 0.0,
                    }
                    features.update({name: value for name, value in v2.items() if name in features})
                    if has_clicks:
                        features.update({"clicks_total_cum": clicks, "clicks_total_28d": clicks * min(1, 28 / day),
                                         "active_days_28d": float(np.clip(10 + 6 * engagement, 0, 28))})
                    rows.append({
                        "student_course": f"{student_id}:{module}-{presentation}", "id_student": student_id,
                        "code_module": module, "code_presentation": presentation, "week": week, "cutoff_day": day,
                        "active": bool(day < unregister_day), "has_clicks": has_clicks, "label": label,
                        "gender": gender, "age_band": age_band, "disability": disability, "imd_band": imd_band,
                        **features,
                    })
    return pd.DataFrame(rows)


