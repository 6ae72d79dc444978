"""Export all-MiniLM-L6-v2 (encoder + mean pooling + L2 norm) to ONNX with torch.

Run as a child process by :func:`models.text_embedding.export_text_embedding_onnx`
(``python -m models._embedding_export SOURCE_DIR TARGET_DIR OPSET``) so no long-lived process imports torch.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"


def export(source: Path, directory: Path, opset: int) -> Path:
    """Write ``model.onnx`` and ``tokenizer.json`` into ``directory`` (atomic renames)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    class PooledEncoder(torch.nn.Module):
        """BERT encoder + attention-masked mean pooling + L2 normalisation, as sentence-transformers does."""

        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            tokens = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    # eager attention traces to plain MatMul/Softmax ops that every ORT build and the quantiser handle.
    encoder = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    module = PooledEncoder(encoder).eval()
    example = (
        torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long),
        torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long),
        torch.zeros((2, 4), dtype=torch.long),
    )
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    dynamic_axes[OUTPUT_NAME] = {0: "batch"}
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "model.onnx"
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        tmp_graph = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                module,
                example,
                str(tmp_graph),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        shutil.copyfile(source / "tokenizer.json", Path(tmp) / "tokenizer.json")
        os.replace(Path(tmp) / "tokenizer.json", directory / "tokenizer.json")
        os.replace(tmp_graph, target)
    return target


if __name__ == "__main__":
    export(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
