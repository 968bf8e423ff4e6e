"""The Galaxy Zoo 2 decision tree as one explicit object.

Every place that needs question/answer names, the Hart et al. (2016) column names, the Kaggle
Galaxy Challenge ``ClassN.M`` names or the parent of a question reads them from ``GZ2_TREE``;
no other module keeps its own column lists.

Vote fractions in Hart16 are *per question*: the answers of one question sum to ~1 among the
volunteers who reached it. The Kaggle challenge's 37 targets are *cumulative*: each later
question is normalised and multiplied by the fraction of its parent answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Answer:
    """One answer of a GZ2 question."""

    key: str  # Hart16 answer id, e.g. "a08"
    slug: str  # Hart16 answer name, e.g. "spiral"
    text: str  # what volunteers were shown


@dataclass(frozen=True)
class Question:
    """One GZ2 question; ``parent`` is the (question key, answer key) that leads to it."""

    key: str  # "t04"
    slug: str  # "spiral"
    text: str
    answers: tuple[Answer, ...]
    parent: tuple[str, str] | None = None
    # The Kaggle challenge normalises every question except Q1 and Q6, which it keeps as is.
    normalise: bool = True


@dataclass(frozen=True)
class AnswerRef:
    """An answer located in the tree: flat index in tree (Kaggle) order and all its names."""

    index: int
    question: Question
    answer: Answer
    kaggle: str  # "Class4.1"

    @property
    def stem(self) -> str:
        """Hart16 column stem, e.g. ``t04_spiral_a08_spiral``."""
        return f"{self.question.key}_{self.question.slug}_{self.answer.key}_{self.answer.slug}"

    @property
    def debiased(self) -> str:
        return f"{self.stem}_debiased"

    @property
    def weighted(self) -> str:
        return f"{self.stem}_weighted_fraction"

    @property
    def name(self) -> str:
        """Short output name ``<question>_<answer>``, e.g. ``spiral_spiral``."""
        return f"{self.question.slug}_{self.answer.slug}"


class DecisionTree:
    """Questions in tree order (every parent question precedes its children)."""

    def __init__(self, questions: tuple[Question, ...]):
        self.questions = questions
        refs: list[AnswerRef] = []
        seen: set[str] = set()
        for qi, q in enumerate(questions, start=1):
            if q.parent is not None:
                pq, pa = q.parent
                if pq not in seen:
                    raise ValueError(f"question {q.key}: parent {pq} must come earlier in tree order")
                if pa not in {a.key for a in self.question(pq).answers}:
                    raise ValueError(f"question {q.key}: parent answer {pq}/{pa} does not exist")
            seen.add(q.key)
            for ai, a in enumerate(q.answers, start=1):
                refs.append(AnswerRef(len(refs), q, a, f"Class{qi}.{ai}"))
        self.answers: tuple[AnswerRef, ...] = tuple(refs)

    def question(self, key: str) -> Question:
        for q in self.questions:
            if q.key == key:
                return q
        raise KeyError(f"no GZ2 question {key!r}")

    def answer(self, question_key: str, answer_key: str) -> AnswerRef:
        for ref in self.answers:
            if ref.question.key == question_key and ref.answer.key == answer_key:
                return ref
        raise KeyError(f"no GZ2 answer {question_key}/{answer_key}")

    def __len__(self) -> int:
        return len(self.answers)

    def _per_answer(self, attribute: str) -> tuple[str, ...]:
        return tuple(getattr(r, attribute) for r in self.answers)

    @cached_property
    def debiased_columns(self) -> tuple[str, ...]:
        return self._per_answer("debiased")

    @cached_property
    def weighted_columns(self) -> tuple[str, ...]:
        return self._per_answer("weighted")

    @cached_property
    def kaggle_columns(self) -> tuple[str, ...]:
        return self._per_answer("kaggle")

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        return self._per_answer("name")

    @cached_property
    def question_slices(self) -> tuple[tuple[Question, slice], ...]:
        """Each question with the slice of its answers in the flat 37-vector."""
        out, start = [], 0
        for q in self.questions:
            out.append((q, slice(start, start + len(q.answers))))
            start += len(q.answers)
        return tuple(out)

    @cached_property
    def parent_index(self) -> tuple[int | None, ...]:
        """Per question (tree order), the flat index of its parent answer, or None."""
        return tuple(
            None if q.parent is None else self.answer(*q.parent).index for q in self.questions
        )

    def cumulative(self, fractions: np.ndarray) -> np.ndarray:
        """Per-question vote fractions (N, 37) → the Kaggle challenge's 37 targets (N, 37).

        Q1 and Q6 are kept as is; every other question is normalised to sum to 1 and multiplied
        by its parent's (already cumulative) target. A question nobody reached (all-zero or
        missing fractions) contributes zeros: its parent target is then ~0 as well.
        """
        f = np.nan_to_num(np.asarray(fractions, dtype=np.float64), nan=0.0)
        if f.ndim != 2 or f.shape[1] != len(self):
            raise ValueError(f"expected fractions of shape (N, {len(self)}), got {f.shape}")
        out = np.zeros_like(f)
        for (q, sl), parent in zip(self.question_slices, self.parent_index):
            block = f[:, sl]
            if q.normalise:
                total = block.sum(axis=1, keepdims=True)
                block = np.divide(block, total, out=np.zeros_like(block), where=total > 0)
            if parent is not None:
                block = block * out[:, parent : parent + 1]
            out[:, sl] = block
        return out

    def per_question(self, cumulative: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`cumulative` for normalised questions: Kaggle targets (N, 37) →
        per-question fractions. Where a question's answers sum to 0 (nobody reached it) the
        fractions are undefined and come back as NaN."""
        c = np.asarray(cumulative, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != len(self):
            raise ValueError(f"expected targets of shape (N, {len(self)}), got {c.shape}")
        out = np.full_like(c, np.nan)
        for q, sl in self.question_slices:
            block = c[:, sl]
            if not q.normalise:
                out[:, sl] = block
                continue
            total = block.sum(axis=1, keepdims=True)
            np.divide(block, total, out=out[:, sl], where=total > 0)
        return out


def _q(key, slug, text, answers, parent=None, normalise=True) -> Question:
    return Question(key, slug, text, tuple(Answer(*a) for a in answers), parent, normalise)


GZ2_TREE = DecisionTree(
    (
        _q("t01", "smooth_or_features", "Is the galaxy simply smooth and rounded, with no sign of a disk?",
           [("a01", "smooth", "Smooth"), ("a02", "features_or_disk", "Features or disk"),
            ("a03", "star_or_artifact", "Star or artifact")], normalise=False),
        _q("t02", "edgeon", "Could this be a disk viewed edge-on?",
           [("a04", "yes", "Yes"), ("a05", "no", "No")], ("t01", "a02")),
        _q("t03", "bar", "Is there a sign of a bar feature through the centre of the galaxy?",
           [("a06", "bar", "Bar"), ("a07", "no_bar", "No bar")], ("t02", "a05")),
        _q("t04", "spiral", "Is there any sign of a spiral arm pattern?",
           [("a08", "spiral", "Spiral"), ("a09", "no_spiral", "No spiral")], ("t02", "a05")),
        _q("t05", "bulge_prominence", "How prominent is the central bulge, compared with the rest of the galaxy?",
           [("a10", "no_bulge", "No bulge"), ("a11", "just_noticeable", "Just noticeable"),
            ("a12", "obvious", "Obvious"), ("a13", "dominant", "Dominant")], ("t02", "a05")),
        _q("t06", "odd", "Is there anything odd?",
           [("a14", "yes", "Yes"), ("a15", "no", "No")], normalise=False),
        _q("t07", "rounded", "How rounded is it?",
           [("a16", "completely_round", "Completely round"), ("a17", "in_between", "In between"),
            ("a18", "cigar_shaped", "Cigar-shaped")], ("t01", "a01")),
        _q("t08", "odd_feature", "Is the odd feature a ring, or is the galaxy disturbed or irregular?",
           [("a19", "ring", "Ring"), ("a20", "lens_or_arc", "Lens or arc"),
            ("a21", "disturbed", "Disturbed"), ("a22", "irregular", "Irregular"),
            ("a23", "other", "Other"), ("a24", "merger", "Merger"),
            ("a38", "dust_lane", "Dust lane")], ("t06", "a14")),
        _q("t09", "bulge_shape", "Does the galaxy have a bulge at its centre? If so, what shape?",
           [("a25", "rounded", "Rounded"), ("a26", "boxy", "Boxy"), ("a27", "no_bulge", "No bulge")],
           ("t02", "a04")),
        _q("t10", "arms_winding", "How tightly wound do the spiral arms appear?",
           [("a28", "tight", "Tight"), ("a29", "medium", "Medium"), ("a30", "loose", "Loose")],
           ("t04", "a08")),
        _q("t11", "arms_number", "How many spiral arms are there?",
           [("a31", "1", "1"), ("a32", "2", "2"), ("a33", "3", "3"), ("a34", "4", "4"),
            ("a36", "more_than_4", "More than 4"), ("a37", "cant_tell", "Can't tell")],
           ("t04", "a08")),
    )
)
