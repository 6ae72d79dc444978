"""Instructor decisions from the platform as ASAP-format training rows (``learnloop train essays
--with-platform-labels``): every accepted or overridden AI grade is a labelled essay of its prompt."""

from __future__ import annotations

import pandas as pd

from learnloop.settings import Settings

# Platform rows get essay ids far above ASAP's (max 21,633) so they never collide with the corpus.
PLATFORM_ID_OFFSET = 10_000_000


def platform_labelled_frame(settings: Settings, *, prompts: list[int] | None = None) -> pd.DataFrame:
    """One ASAP-format row per staff decision (``domain1_score`` = the final score on the prompt's scale).

    Rows go to training folds 0–3 (never fold 4, the dev fold that fits cut points and conformal width), so
    the evaluation split of the corpus is unchanged."""
    from platform_api.api import labelled_essays, open_session

    with open_session(settings) as session:
        examples = labelled_essays(session=session)
    rows = []
    for index, example in enumerate(examples):
        if prompts is not None and example.prompt_id not in prompts:
            continue
        rows.append({"essay_id": PLATFORM_ID_OFFSET + index, "essay_set": example.prompt_id,
                     "essay": " ".join(example.essay.split()), "domain1_score": example.final_score,
                     "rater1_domain1": example.final_score, "rater2_domain1": example.final_score,
                     "fold": index % 4, "source": "platform", "ai_score": example.ai_score,
                     "accepted_ai": example.accepted_ai})
    return pd.DataFrame(rows, columns=["essay_id", "essay_set", "essay", "domain1_score", "rater1_domain1",
                                       "rater2_domain1", "fold", "source", "ai_score", "accepted_ai"])


def with_platform_labels(corpus: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """``corpus`` plus the platform's labelled essays, in the corpus's columns."""
    platform = platform_labelled_frame(settings)
    if platform.empty:
        return corpus
    platform = platform[[c for c in corpus.columns if c in platform.columns]]
    return pd.concat([corpus, platform], ignore_index=True)
