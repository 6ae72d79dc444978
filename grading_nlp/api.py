"""Public surface of ``grading_nlp``: AI-suggested essay grades with confidence and reasons.

``grade_essay`` never raises for bad essays: empty, oversized, undecodable text or a prompt without a trained
model give an ``AiGrade`` with status ``needs_manual_grading`` and a reason an instructor can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from grading_nlp.data import AiGrade, EssayGraderStatus, GradeStatus, ModelKind
from learnloop.settings import Settings, get_settings

__all__ = [
    "MAX_ESSAY_CHARS",
    "AiGrade",
    "EssayGraderStatus",
    "GradeStatus",
    "ModelKind",
    "choose_model_kind",
    "essay_grader_status",
    "evaluate_essays",
    "grade_essay",
    "grade_essays",
    "grade_pending_essays",
    "platform_labelled_essays",
    "run_grading_worker",
    "start_grading_worker",
    "train_essay_models",
    "trained_essay_models",
]

MAX_ESSAY_CHARS = 50_000  # ~10x the longest ASAP essay; longer texts are not essays this model knows
MIN_ESSAY_WORDS = 5


def choose_model_kind(n_graded: int) -> ModelKind | None:
    """The learner a prompt gets with ``n_graded`` instructor-graded essays: ``full`` from 300 essays,
    ``few_shot`` (handcrafted features + ridge) from 20, None below (grade by hand)."""
    from grading_nlp._model import choose_model_kind as choose

    return choose(n_graded)


def _manual(reason: str, prompt_id: int | None, version: str | None = None) -> AiGrade:
    return AiGrade(status=GradeStatus.needs_manual_grading, score=None, interval=None, confidence=0.0,
                   needs_review=True, reasons=[reason], model_version=version, prompt_id=prompt_id)


def _decode(text: str | bytes) -> tuple[str | None, list[str]]:
    """Text as str plus notes; None when it cannot be read as text."""
    notes: list[str] = []
    if isinstance(text, bytes | bytearray):
        try:
            return bytes(text).decode("utf-8"), notes
        except UnicodeDecodeError:
            pass
        try:
            # The ASAP originals were Windows-1252; that is the likeliest non-UTF-8 source of an essay.
            decoded = bytes(text).decode("cp1252")
        except UnicodeDecodeError:
            return None, notes
        notes.append("The submission was not UTF-8; it was read as Windows-1252. Check the text by hand.")
        return decoded, notes
    if not isinstance(text, str):
        return None, notes
    # Lone surrogates (undecodable bytes smuggled through surrogateescape) cannot be encoded; replace them.
    cleaned = text.encode("utf-8", errors="replace").decode("utf-8")
    if cleaned != text:
        notes.append("The submission held characters that are not valid Unicode; they were replaced.")
    return cleaned, notes


def grade_essay(text: str | bytes, prompt_id: int, *, settings: Settings | None = None) -> AiGrade:
    """An AI-suggested grade for one essay on ``prompt_id``'s scale, with a conformal interval, a confidence,
    whether an instructor should review it first, and the rubric signals that drove it.

    Never raises for bad input: an empty, oversized (> ``MAX_ESSAY_CHARS``) or undecodable essay, or a prompt
    without a trained model (``learnloop train essays``), returns status ``needs_manual_grading``.
    """
    return grade_essays([(text, prompt_id)], settings=settings)[0]


def grade_essays(essays: Sequence[tuple[str | bytes, int]], *, settings: Settings | None = None) -> list[AiGrade]:
    """``grade_essay`` for several ``(text, prompt_id)`` pairs at once, in order: the essays of one prompt share
    one vectorizer pass and one ONNX head run (what the model service's adaptive batching calls). Each grade is
    exactly the one ``grade_essay`` gives for that essay alone."""
    from grading_nlp import _store
    from grading_nlp._features import handcrafted_features, normalise_text

    settings = settings or get_settings()
    grades: list[AiGrade | None] = [None] * len(essays)
    ready: dict[int, list[tuple[int, str, np.ndarray, list[str]]]] = {}  # prompt -> (index, text, hand, notes)
    loaded_by_prompt = {}
    for index, (text, prompt_id) in enumerate(essays):
        if prompt_id not in loaded_by_prompt:
            loaded_by_prompt[prompt_id] = _store.load_model(settings, prompt_id)
        loaded = loaded_by_prompt[prompt_id]
        if loaded is None:
            grades[index] = _manual(f"No AI grading model is trained for prompt {prompt_id} yet; grade this essay "
                                    "by hand (a model is trained once the prompt has 20 graded essays).", prompt_id)
            continue
        version = loaded.model.model_version
        essay, notes = _decode(text)
        if essay is None:
            grades[index] = _manual("The submission is not readable text (neither UTF-8 nor Windows-1252); ask the "
                                    "learner to resubmit it as plain text.", prompt_id, version)
            continue
        if len(essay) > MAX_ESSAY_CHARS:
            grades[index] = _manual(f"The essay has {len(essay):,} characters, more than the {MAX_ESSAY_CHARS:,} the "
                                    "AI grader accepts; grade it by hand.", prompt_id, version)
            continue
        normalised = normalise_text(essay)
        hand = handcrafted_features(normalised)
        if hand[1] < np.log1p(MIN_ESSAY_WORDS):
            grades[index] = _manual(f"The essay is empty or shorter than {MIN_ESSAY_WORDS} words; grade it by hand.",
                                    prompt_id, version)
            continue
        ready.setdefault(prompt_id, []).append((index, normalised, hand, notes))
    for prompt_id, rows in ready.items():
        loaded = loaded_by_prompt[prompt_id]
        dense, text_score = loaded.model.dense([row[1] for row in rows], hand=np.vstack([row[2] for row in rows]))
        head_score = loaded.head(dense)
        for position, (index, _, _, notes) in enumerate(rows):
            grades[index] = _suggested(loaded.model, prompt_id, dense[position], head_score[position:position + 1],
                                       text_score[position:position + 1], notes)
    return grades  # type: ignore[return-value] - every index was filled above


def _suggested(model, prompt_id: int, dense: np.ndarray, head_score: np.ndarray, text_score: np.ndarray,
               notes: list[str]) -> AiGrade:
    """The grade of one essay from its head inputs and scores (arrays of length 1)."""
    from grading_nlp._model import COVERAGE, _sigma
    from grading_nlp._reasons import explain, out_of_range_signals

    half = model.conformal_quantile * _sigma(model.kind, head_score, text_score)
    score = int(model.scores(head_score)[0])
    low, high = model.intervals(head_score, half)
    interval = (int(low[0]), int(high[0]))
    width = 2 * float(half[0]) * model.span
    unusual = out_of_range_signals(model.feature_names, dense.astype(np.float64), model.reference)
    needs_review = bool(width > model.review_width or unusual or notes or model.kind is ModelKind.few_shot)
    # From the continuous interval, not its rounded and clipped ends: an interval cut off at the bottom of the
    # scale must not look narrower than it is, so confidence orders grades exactly as review routing does.
    confidence = float(np.clip(1.0 - width / model.span, 0.0, 1.0))
    reasons = notes + unusual + explain(model.feature_names, dense.astype(np.float64), model.reference)
    return AiGrade(status=GradeStatus.suggested, score=score, interval=interval, confidence=round(confidence, 3),
                   needs_review=needs_review, reasons=reasons, model_version=model.model_version,
                   prompt_id=prompt_id, coverage=COVERAGE, score_range=model.score_range)


def train_essay_models(
    path: Path | None = None,
    *,
    prompts: list[int] | None = None,
    register: bool = False,
    settings: Settings | None = None,
    advance: Callable[[str], None] | None = None,
) -> list[dict]:
    """Train one model per prompt on every graded essay of an ASAP-format TSV (default: the shared ASAP-AES),
    export each head to ONNX (parity ≤ 1e-5 asserted) and save it under ``<data dir>/grading``.

    Fold 4 is the dev split for cut points and conformal width. With ``register`` each head is also registered
    through ``training.api`` as ``essay_grader_p<prompt>`` (alias ``challenger``; gate metric ``qwk``).
    Returns one summary per prompt.
    """
    from grading_nlp import _store
    from grading_nlp._evaluate import score_range_for
    from grading_nlp._features import normalise_text
    from grading_nlp._model import fit_prompt_model
    from learnloop.datasets import PROMPT_SCORE_RANGES, dataset_dir, load_essays

    settings = settings or get_settings()
    essays = load_essays(path)
    # Recorded in meta.json so drift monitoring rebuilds its reference from the essays this model learned from.
    essays_path = str(Path(path).resolve() if path is not None else dataset_dir("asap_aes") / "essays.tsv")
    summaries = []
    for prompt in sorted(int(p) for p in essays["essay_set"].unique()):
        if prompts is not None and prompt not in prompts:
            continue
        if advance:
            advance(f"prompt {prompt}")
        frame = essays[essays["essay_set"] == prompt].reset_index(drop=True)
        if choose_model_kind(len(frame)) is None:
            summaries.append({"prompt": prompt, "status": "too few graded essays", "n_train": len(frame)})
            continue
        score_range = score_range_for(prompt, frame["domain1_score"], PROMPT_SCORE_RANGES)
        texts = [normalise_text(t) for t in frame["essay"].astype(str)]
        dev_mask = (frame["fold"] == 4).to_numpy() if "fold" in frame else None
        model = fit_prompt_model(texts, frame["domain1_score"].to_numpy(), score_range, prompt_id=prompt,
                                 dev_mask=dev_mask)
        trained_at = datetime.now(UTC)
        model.model_version = f"essay-p{prompt}-{model.kind.value}-{trained_at.strftime('%Y%m%dT%H%M%S')}"
        held_out = model.dense(texts[:200])[0]
        onnx_bytes, parity = _store.export_head_onnx(model, held_out)
        meta = {"prompt": prompt, "model_version": model.model_version, "kind": model.kind.value,
                "score_range": list(score_range), "n_train": model.n_train, "essays_path": essays_path,
                "trained_at": trained_at.isoformat(timespec="seconds"), "n_inputs": len(model.feature_names),
                "dev_qwk": model.dev_qwk,
                "onnx_parity_max_abs_diff": parity, "conformal_quantile": model.conformal_quantile}
        meta["interval_coverage_gap"] = model.extra["interval_coverage_gap"]
        meta["threshold_rule"] = model.extra.get("threshold_rule")
        if register:
            meta["registered_version"] = _register(model, onnx_bytes, parity, frame, dev_mask, meta, settings)
        _store.save_model(settings, model, onnx_bytes, meta)
        summaries.append(meta)
    return summaries


def trained_essay_models(*, settings: Settings | None = None) -> list[dict]:
    """The ``meta.json`` of every prompt's saved grader (what ``grade_essay`` serves), by prompt: ``prompt``,
    ``model_version``, ``kind``, ``score_range``, ``n_train`` and, for graders trained since they were recorded,
    ``essays_path`` (the ASAP-format TSV it learned from), ``trained_at`` and ``n_inputs`` (the head's features)."""
    import json

    from grading_nlp import _store

    folder = _store.models_dir(settings or get_settings())
    metas = [json.loads(path.read_text()) for path in folder.glob(f"prompt-*/{_store.META_FILE}")
             if (path.parent / _store.MODEL_FILE).is_file()] if folder.is_dir() else []
    return sorted(metas, key=lambda meta: int(meta["prompt"]))


def essay_grader_status(*, settings: Settings | None = None) -> list[EssayGraderStatus]:
    """Every prompt's saved grader as ``grade_essay`` serves it in this process, by prompt: its version, where it
    came from (``trained_on``) and when it was trained, how many features its head takes, whether this process
    has loaded it yet (graders load at their prompt's first essay) and what stops or degrades it (``problem``).
    Nothing is loaded for serving to answer (a grader saved before its meta.json recorded ``n_inputs`` has its ONNX
    head opened once to count them)."""
    from grading_nlp import _store

    return _store.grader_statuses(settings or get_settings())


def _register(model, onnx_bytes: bytes, parity: float, frame, dev_mask, meta: dict, settings: Settings) -> str:
    from models.api import FeatureInput, InputKind, ModelSchema, OnnxExport
    from training.api import GatePolicy, data_fingerprint, register_onnx_model

    # The head takes one float32 matrix input ("features", columns in feature_names order), not one input per
    # feature; the fitted text space, cut points and conformal scale ship as the model's preprocessing.
    schema = ModelSchema(
        inputs=tuple(FeatureInput(name, InputKind.numeric) for name in model.feature_names),
        probability_output="variable",
        extra={"onnx_input": "features", "layout": "matrix", "output": "score in [0, 1] of the prompt's range",
               "prompt": model.prompt_id, "score_range": list(model.score_range)},
    )
    export = OnnxExport(onnx_bytes=onnx_bytes, schema=schema, parity_max_abs_diff=parity, parity_rows=200)
    eval_rows = frame[dev_mask] if dev_mask is not None else frame
    info = register_onnx_model(
        name=f"essay_grader_p{model.prompt_id}", export=export,
        metrics={"qwk": float(model.dev_qwk or 0.0), "interval_coverage_gap": meta["interval_coverage_gap"]},
        params={"kind": model.kind.value, "n_train": model.n_train, "model_version": model.model_version},
        preprocessing={"thresholds": model.thresholds.tolist(), "conformal_quantile": model.conformal_quantile,
                       "feature_names": list(model.feature_names), "normalise": "grading_nlp._features"},
        train_fingerprint=data_fingerprint(frame[["essay_id", "domain1_score"]]),
        eval_fingerprint=data_fingerprint(eval_rows[["essay_id", "domain1_score"]]),
        description=f"Essay grader for prompt {model.prompt_id} ({model.kind.value})",
        gate_policy=GatePolicy(metric="qwk", tolerance=0.01, calibration_metric="interval_coverage_gap",
                               max_calibration_error=0.1, subgroup_prefix="subgroup_qwk."),
        settings=settings,
    )
    return info.version


def grade_pending_essays(*, settings: Settings | None = None, grader: Callable[[str, int], AiGrade] | None = None,
                         limit: int = 20, now: datetime | None = None, max_attempts: int | None = None,
                         backoff_seconds: float | None = None) -> dict[str, int]:
    """One pass of the AI grading worker over the platform's queued essay submissions.

    Claims up to ``limit`` due jobs (``platform_api.api.claim_grading_tasks``) for
    ``settings.grading_lease_seconds``; grades them one after another, renewing the lease of the one it grades
    every third of that (for at most ``settings.grading_max_seconds``) and skipping a waiting one another worker
    took over after its lease ran out; grades each essay with
    ``grader`` (default :func:`grade_essay` on the prompt's trained model) and records the suggestion, or
    "needs manual grading" with the reason (bad essay, no model, no prompt linked). An exception is recorded
    as a failed attempt and retried with exponential backoff; after ``max_attempts`` the essay goes to staff as
    "needs manual grading". Returns counts: claimed, suggested, needs_manual_grading, failed, gave_up, and
    lease_lost (jobs skipped or results dropped because the lease ran out and another worker took the job over),
    already_graded (results dropped because staff graded the submission by hand meanwhile: the job ends there).
    """
    from grading_nlp._worker import grade_pending

    return grade_pending(settings=settings, grader=grader, limit=limit, now=now, max_attempts=max_attempts,
                         backoff_seconds=backoff_seconds).as_dict()


def run_grading_worker(*, settings: Settings | None = None, once: bool = False, poll_seconds: float = 2.0,
                       stop=None) -> dict[str, int]:
    """Grade queued essays until ``stop`` (a ``threading.Event``) is set, or one pass with ``once``."""
    from grading_nlp._worker import run_worker

    return run_worker(settings=settings, once=once, poll_seconds=poll_seconds, stop=stop).as_dict()


def start_grading_worker(*, settings: Settings | None = None, poll_seconds: float = 2.0,
                         grader: Callable[[str, int], AiGrade] | None = None):
    """Run the worker in a daemon thread (what the served platform does); returns ``(thread, stop_event)``."""
    from grading_nlp._worker import start_worker_thread

    return start_worker_thread(settings=settings, poll_seconds=poll_seconds, grader=grader)


def platform_labelled_essays(*, settings: Settings | None = None, prompts: list[int] | None = None):
    """Every instructor decision in the platform as ASAP-format rows (``domain1_score`` = final score on the
    prompt's scale; also ``ai_score`` and ``accepted_ai``), in training folds 0–3 only."""
    from grading_nlp._platform_labels import platform_labelled_frame

    return platform_labelled_frame(settings or get_settings(), prompts=prompts)


def evaluate_essays(
    path: Path | None = None,
    *,
    settings: Settings | None = None,
    cold_start: bool = True,
    advance: Callable[[str], None] | None = None,
) -> dict:
    """The NEA 5-fold evaluation on an ASAP-format TSV (default: the shared ASAP-AES): ``avg_qwk``,
    ``qwk_by_prompt``, ``exact``, ``adjacent``, ``cold_start_avg_qwk`` (50 graded essays per prompt), ``folds``,
    interval coverage and review routing figures. Features are cached under ``settings.cache_dir``."""
    from grading_nlp._evaluate import evaluate_essays as run
    from learnloop.datasets import PROMPT_SCORE_RANGES, load_essays

    settings = settings or get_settings()
    essays = load_essays(path)
    return run(essays, PROMPT_SCORE_RANGES, cache_dir=settings.cache_dir / "grading_nlp",
               cold_start=cold_start, advance=advance)
