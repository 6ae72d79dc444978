"""Split long texts into sentence-aligned passages that fit the embedder's window.

MiniLM reads at most 256 word pieces; 71% of SciFact abstracts are longer, so a document is embedded as
passages (title + a few sentences each) and scored by its best passage (max pooling). Short texts stay whole.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? followed by whitespace and an upper-case letter, digit or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")

MAX_PASSAGE_WORDS = 110  # ~170-200 word pieces for technical English, + title stays under 256
WHOLE_TEXT_WORDS = 150  # texts this short are embedded as one passage


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def passages(title: str, body: str, *, max_words: int = MAX_PASSAGE_WORDS) -> list[str]:
    """Passages to embed for one item: ``title. body`` when short, else ``title. <sentences>`` windows."""
    title = (title or "").strip()
    body = (body or "").strip()
    prefix = f"{title}. " if title else ""
    if len(body.split()) <= WHOLE_TEXT_WORDS:
        whole = (prefix + body).strip()
        return [whole] if whole else []
    out: list[str] = []
    current: list[str] = []
    current_words = 0
    for sentence in split_sentences(body):
        words = len(sentence.split())
        if current and current_words + words > max_words:
            out.append(prefix + " ".join(current))
            current, current_words = [], 0
        current.append(sentence)
        current_words += words
    if current:
        out.append(prefix + " ".join(current))
    return out
