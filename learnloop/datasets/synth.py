"""Synthetic OULAD-, ASAP-, BEIR- and catalog-shaped data **with real signal**, so the demo and the tests
run anywhere. Files are written in the same layout and format as the real data, and read by the same
readers. Signal: a latent engagement per learner drives clicks, submissions, scores and the final result;
an essay's latent quality drives its length, vocabulary and spelling, and its score."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from learnloop.datasets.asap import PROMPT_SCORE_RANGES

PRESENTATIONS = ("2013B", "2013J", "2014B", "2014J")
MODULES = ("AAA", "BBB")
# Like the shared data, only some presentations have click logs: absent clicks must stay absent.
CLICK_PRESENTATIONS = {("AAA", "2013J"), ("AAA", "2014J"), ("BBB", "2013B"), ("BBB", "2014J")}
ACTIVITY_TYPES = ("resource", "oucontent", "forumng", "quiz", "url", "subpage", "homepage")
REGIONS = ("East Anglian Region", "Scotland", "London Region", "South Region", "Wales", "North Western Region")
EDUCATION = ("No Formal quals", "Lower Than A Level", "A Level or Equivalent", "HE Qualification",
             "Post Graduate Qualification")
IMD_BANDS = ("0-10%", "10-20", "20-30%", "30-40%", "40-50%", "50-60%", "60-70%", "70-80%", "80-90%", "90-100%")
AGE_BANDS = ("0-35", "35-55", "55<=")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_synthetic(out: Path, *, seed: int = 7, students_per_presentation: int = 120,
                    essays_per_prompt: int = 160) -> dict[str, Path]:
    """Write ``oulad/``, ``asap_aes/``, ``synth_beir/`` and ``course_catalog/`` under ``out``."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    written = {
        "oulad": _write_oulad(out / "oulad", rng, students_per_presentation),
        "asap_aes": _write_essays(out / "asap_aes", rng, essays_per_prompt),
        "synth_beir": _write_beir(out / "synth_beir", rng),
        "course_catalog": _write_catalog(out / "course_catalog", rng),
    }
    return written


# --------------------------------------------------------------------------- OULAD
def _write_oulad(folder: Path, rng: np.random.Generator, n_students: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    courses, assessments, vle, info, regs, subs, clicks = [], [], [], [], [], [], []
    next_student, next_assessment, next_site = 10_000, 1_000, 500_000
    for module in MODULES:
        for presentation in PRESENTATIONS:
            length = int(rng.integers(240, 270))
            courses.append((module, presentation, length))
            # Assessments: five TMAs (weights sum to 100), two CMAs, one exam without a deadline.
            plan = [("TMA", d, 20.0) for d in (19, 54, 96, 131, 173)] + [("CMA", 33, 0.0), ("CMA", 117, 0.0)]
            plan.append(("Exam", None, 100.0))
            course_assessments = []
            for kind, date, weight in plan:
                course_assessments.append((next_assessment, kind, date))
                assessments.append((module, presentation, next_assessment, kind, date, weight))
                next_assessment += 1
            sites = []
            for _ in range(24):
                activity = ACTIVITY_TYPES[int(rng.integers(len(ACTIVITY_TYPES)))]
                vle.append((next_site, module, presentation, activity, None, None))
                sites.append(next_site)
                next_site += 1

            n = n_students
            ids = np.arange(next_student, next_student + n)
            next_student += n
            engagement = rng.normal(size=n)
            prev_attempts = rng.poisson(0.25, size=n)
            credits = rng.choice([30, 60, 90, 120, 240], size=n, p=[0.1, 0.5, 0.15, 0.2, 0.05])
            education = rng.integers(len(EDUCATION), size=n)
            risk_logit = (0.1 - 1.6 * engagement + 0.5 * prev_attempts + 0.004 * (credits - 60)
                          - 0.15 * (education - 2))
            at_risk = rng.random(n) < _sigmoid(risk_logit)
            withdrawn = at_risk & (rng.random(n) < 0.6)
            result = np.where(withdrawn, "Withdrawn", np.where(at_risk, "Fail", np.where(
                engagement + rng.normal(scale=0.5, size=n) > 1.2, "Distinction", "Pass")))
            reg_date = -rng.integers(5, 150, size=n)
            late = rng.random(n) < 0.04
            reg_date = np.where(late, rng.integers(3, 25, size=n), reg_date)
            unreg = np.where(withdrawn, rng.integers(-10, int(length * 0.7), size=n), -9999)
            unreg = np.where(withdrawn, np.maximum(unreg, reg_date + 1), unreg)
            for i in range(n):
                info.append((module, presentation, int(ids[i]), "MF"[int(rng.integers(2))],
                             REGIONS[int(rng.integers(len(REGIONS)))], EDUCATION[int(education[i])],
                             None if rng.random() < 0.03 else IMD_BANDS[int(rng.integers(len(IMD_BANDS)))],
                             AGE_BANDS[int(rng.choice(3, p=[0.7, 0.27, 0.03]))], int(prev_attempts[i]),
                             int(credits[i]), "Y" if rng.random() < 0.1 else "N", str(result[i])))
                regs.append((module, presentation, int(ids[i]), int(reg_date[i]),
                             None if unreg[i] == -9999 else int(unreg[i])))
            # Submissions: engaged learners submit on time and score higher; nobody submits after leaving.
            for assessment_id, _kind, date in course_assessments:
                if date is None:
                    continue
                still_in = (unreg == -9999) | (unreg > date)
                submits = still_in & (rng.random(n) < _sigmoid(1.6 + 1.4 * engagement - 0.8 * at_risk))
                offsets = np.round(rng.normal(-2 + 1.5 * (engagement < -0.8), 3, size=n)).astype(int)
                scores = np.clip(np.round(62 + 14 * engagement - 14 * at_risk + rng.normal(0, 10, size=n)), 0, 100)
                banked = rng.random(n) < 0.01
                for i in np.nonzero(submits)[0]:
                    subs.append((assessment_id, int(ids[i]), -1 if banked[i] else int(date + offsets[i]),
                                 int(banked[i]), None if rng.random() < 0.002 else float(scores[i])))
            if (module, presentation) in CLICK_PRESENTATIONS:
                days = np.arange(-10, length)
                active_from = np.maximum(reg_date, -10)
                active_to = np.where(unreg == -9999, length, unreg)
                daily = _sigmoid(-0.6 + 1.3 * engagement - 0.9 * at_risk)[:, None]
                decay = np.where(at_risk[:, None], np.exp(-np.maximum(days[None, :], 0) / 120.0), 1.0)
                active = rng.random((n, len(days))) < daily * decay * 0.8
                active &= (days[None, :] >= active_from[:, None]) & (days[None, :] < active_to[:, None])
                rows, cols = np.nonzero(active)
                for r, c in zip(rows, cols, strict=True):
                    for site in rng.choice(sites, size=int(rng.integers(1, 4)), replace=False):
                        clicks.append((module, presentation, int(ids[r]), int(site), int(days[c]),
                                       int(rng.poisson(2.5)) + 1))

    def save(name: str, columns: list[str], rows: list[tuple]) -> None:
        pd.DataFrame(rows, columns=columns).to_csv(folder / name, index=False)

    save("courses.csv", ["code_module", "code_presentation", "module_presentation_length"], courses)
    save("assessments.csv", ["code_module", "code_presentation", "id_assessment", "assessment_type", "date",
                             "weight"], [(*a[:4], None if a[4] is None else int(a[4]), a[5]) for a in assessments])
    save("vle.csv", ["id_site", "code_module", "code_presentation", "activity_type", "week_from", "week_to"], vle)
    save("studentInfo.csv", ["code_module", "code_presentation", "id_student", "gender", "region",
                             "highest_education", "imd_band", "age_band", "num_of_prev_attempts",
                             "studied_credits", "disability", "final_result"], info)
    save("studentRegistration.csv", ["code_module", "code_presentation", "id_student", "date_registration",
                                     "date_unregistration"], regs)
    save("studentAssessment.csv", ["id_assessment", "id_student", "date_submitted", "is_banked", "score"], subs)
    frame = pd.DataFrame(clicks, columns=["code_module", "code_presentation", "id_student", "id_site", "date",
                                          "sum_click"])
    with gzip.open(folder / "studentVle.csv.gz", "wt", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False)
    # pandas writes Int columns with None as floats ("12.0"); keep integers integral like upstream.
    for name in ("assessments.csv", "studentRegistration.csv", "studentAssessment.csv"):
        table = pd.read_csv(folder / name)
        for column in table.columns:
            if table[column].dtype == float and column not in ("weight", "score"):
                table[column] = table[column].astype("Int64")
        table.to_csv(folder / name, index=False)
    return folder


# --------------------------------------------------------------------------- essays
_BASIC = ("good", "bad", "thing", "stuff", "people", "like", "very", "really", "get", "go", "make", "think",
          "big", "nice", "a lot", "kids", "time", "computer", "use", "help")
_RICH = ("consequently", "furthermore", "significant", "perspective", "demonstrate", "substantial", "evidence",
         "nevertheless", "analysis", "community", "essential", "influence", "contribute", "beneficial",
         "however", "therefore", "moreover", "individuals", "technology", "interaction", "ultimately")
_FILLER = ("the", "a", "and", "to", "of", "in", "is", "that", "it", "for", "they", "we", "can", "with", "on")


def _misspell(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 2))
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _essay(quality: float, rng: np.random.Generator) -> str:
    n_words = int(40 + 320 * quality + rng.normal(0, 25))
    sentences, words = [], []
    for _ in range(max(n_words, 12)):
        pick = rng.random()
        if pick < 0.45:
            word = _FILLER[int(rng.integers(len(_FILLER)))]
        elif pick < 0.45 + 0.45 * quality:
            word = _RICH[int(rng.integers(len(_RICH)))]
        else:
            word = _BASIC[int(rng.integers(len(_BASIC)))]
        if rng.random() < 0.12 * (1 - quality):
            word = _misspell(word, rng)
        if rng.random() < 0.01:
            word = f"@PERSON{int(rng.integers(1, 4))}"
        words.append(word)
        if len(words) >= int(rng.integers(8, 20)):
            sentences.append(" ".join(words).capitalize() + ("." if rng.random() > 0.1 else ""))
            words = []
    if words:
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def _write_essays(folder: Path, rng: np.random.Generator, per_prompt: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows, essay_id = [], 1
    for prompt in (1, 2, 3):
        low, high = PROMPT_SCORE_RANGES[prompt]
        quality = rng.beta(2.2, 2.2, size=per_prompt)
        for q in quality:
            true = low + q * (high - low)
            r1 = int(np.clip(round(true + rng.normal(0, 0.4)), low, high))
            r2 = int(np.clip(round(true + rng.normal(0, 0.4)), low, high))
            score = int(np.clip(round((r1 + r2) / 2), low, high))
            rows.append({"essay_id": essay_id, "essay_set": prompt, "fold": int(rng.integers(5)),
                         "essay": _essay(float(q), rng), "rater1_domain1": r1, "rater2_domain1": r2,
                         "domain1_score": score})
            essay_id += 1
    pd.DataFrame(rows).to_csv(folder / "essays.tsv", sep="\t", index=False)
    return folder


# --------------------------------------------------------------------------- retrieval
_TOPICS = {
    "cardiology": "heart cardiac artery blood pressure hypertension stroke cholesterol vascular ventricle atrial",
    "oncology": "tumor cancer chemotherapy metastasis carcinoma oncogene radiation lymphoma biopsy malignant",
    "immunology": "antibody antigen immune lymphocyte cytokine vaccine inflammation macrophage tcell allergy",
    "neurology": "neuron brain cortex synapse dopamine seizure dementia cognitive axon neural",
    "genetics": "gene mutation dna genome allele chromosome expression sequencing transcription variant",
    "nutrition": "diet vitamin obesity protein calorie fiber metabolism glucose insulin nutrient",
}
_COMMON = ["study", "results", "patients", "analysis", "increased", "associated", "effect", "data", "clinical", "significant"]


def _write_beir(folder: Path, rng: np.random.Generator) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    topic_names = list(_TOPICS)
    docs, queries, qrels = [], [], []
    for d in range(240):
        topic = _TOPICS[topic_names[d % len(topic_names)]].split()
        # Each document has a few distinctive words of its own so a query can single it out.
        own = [f"{topic[0][:4]}{chr(97 + (d // 26) % 26)}{chr(97 + d % 26)}x" for _ in range(1)] + \
            list(rng.choice(topic, size=3, replace=False))
        body = list(rng.choice(topic, size=25)) + list(rng.choice(_COMMON, size=15)) + own * 3
        rng.shuffle(body)
        docs.append({"_id": f"d{d}", "title": " ".join(own).title(), "text": " ".join(body)})
    for q in range(90):
        target = int(rng.integers(len(docs)))
        words = docs[target]["title"].lower().split() + list(rng.choice(_COMMON, size=2))
        queries.append({"_id": f"q{q}", "text": " ".join(words)})
        qrels.append((f"q{q}", f"d{target}", 1))
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(doc) + "\n" for doc in docs)
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(query) + "\n" for query in queries)
    header = "query-id\tcorpus-id\tscore\n"
    for split, part in (("train", qrels[:40]), ("test", qrels[40:])):
        (folder / "qrels" / f"{split}.tsv").write_text(header + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in part))
    return folder


def _write_catalog(folder: Path, rng: np.random.Generator) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subjects = {
        "Computer Science": "programming python algorithms data structures software testing databases",
        "Data Science": "statistics machine learning regression visualization pandas probability",
        "Business & Management": "marketing finance strategy leadership accounting negotiation",
        "Humanities": "history philosophy literature writing ethics art",
    }
    rows = []
    for i in range(80):
        subject = list(subjects)[i % len(subjects)]
        words = subjects[subject].split()
        title = f"{' '.join(rng.choice(words, size=2, replace=False)).title()} {['Basics', 'in Practice', 'Advanced'][i % 3]}"
        summary = f"Learn {' and '.join(rng.choice(words, size=2, replace=False))}."
        description = " ".join(rng.choice(words, size=30)) + "."
        rows.append({"title": title, "summary": summary, "n_enrolled": str(int(rng.integers(100, 90_000))),
                     "Level": ["Introductory", "Intermediate", "Advanced"][i % 3], "subject": subject,
                     "course_description": description, "course_url": f"https://example.org/course/c{i}"})
    pd.DataFrame(rows).to_csv(folder / "edx_courses.csv", index=False)
    return folder
