"""Template captions from Galaxy Zoo 2 vote fractions, vectorised.

Reproduces the phrase set of the seed project's caption generator
(LevIgnatev/galaxy_morphology, ``src/captioning/caption_generator.py``): galaxy type, arm winding,
arm count, merger, edge-on, bar, cigar shape, ring, dust lane, disturbance, lens/arc, bulge
prominence and bulge shape — without its defects:

* only galaxies with spiral arms are "spiral"; an edge-on disk is "an edge-on disk galaxy" and a
  face-on disk without arms is "a disk galaxy without spiral arms" (lenticular-like);
* GZ2's "more than 4" arms answer is "more than four" (the seed said "more than 5");
* bulge prominence (t05) is only stated for face-on disks, bulge shape (t09) only for edge-ons,
  roundness (t07) only for ellipticals;
* phrase variants are chosen by a stable hash of ``object_id`` (CRC-32 of its UTF-8 text, mixed
  per phrase slot), never by row position, so reordering rows never changes a caption;
* every fact is decided as an array over all rows and the strings are assembled with
  ``numpy.strings`` — no per-row Python loop except the CRC-32 of each id.

How facts are decided
---------------------
Inputs are per-question vote fractions (Hart et al. 2016 sense) in ``GZ2_TREE`` order; NaN counts as
0. They are turned into the Kaggle-style cumulative probabilities with ``GZ2_TREE.cumulative``, so
the probability of reaching a question is the cumulative probability of its parent answer (e.g.
reach(t03 bar) = P(features) · P(not edge-on)).

*Detail facts* (bar, bulge, roundness, bulge shape, arms, winding, odd feature) need both

1. the question to be reached: cumulative reach ≥ ``REACH_THRESHOLDS[question]``, and
2. a majority among those who reached it: the winning answer's cumulative probability
   > ``ANSWER_MAJORITY`` · reach,

and the galaxy's type to be one the question is about (bar only for face-on disks, etc.).

*Type*: the 5-class label of :mod:`catalogs.labels` decides it where it is decided (spiral,
elliptical, edge-on → "edge-on disk", merger), except that a spiral or edge-on label — decided on a
per-question fraction deep in the tree, whoever reached it — yields to the *tree path*: the
plurality answer of t01 (smooth / features / star), then of t02 (edge-on or not), then of t04
(spiral or not), the way GZ2's own ``gz2_class`` summary is built. So an object most volunteers
called edge-on, where the few who said "not edge-on" then said "spiral", is an edge-on disk, not a
spiral (on the 700-galaxy real sample 54 labels are overridden; GZ2's ``gz2_class`` sides with the
caption on all 54). Undecided ("ambiguous") labels take an irregular type when "irregular" is
the odd-feature majority, else the tree path; "uncertain" is left for rows with no votes.

Facts that do not apply to a type are ``None``; yes/no facts that apply but are not stated are
"no" (a caption cannot say "unbarred" for a disk whose bar question was barely reached, so absence
means "not stated").
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

from catalogs.labels import derive_labels
from catalogs.tree import GZ2_TREE

# --------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------

#: A detail answer is stated when it wins more than this share of the volunteers who reached its
#: question (cumulative P(answer) > ANSWER_MAJORITY · reach). A strict majority, the usual GZ2 cut
#: (e.g. p_bar > 0.5); single-choice questions can then have at most one stated answer.
ANSWER_MAJORITY = 0.5

#: Minimum cumulative probability of *reaching* each detail question (= cumulative probability of
#: its parent answer) before its answers are trusted. These are cumulative versions of the
#: clean-sample cuts of Willett et al. (2013, Table 3) — features ≈ 0.43 and not edge-on ≈ 0.72
#: for t03–t05 (product ≈ 0.31), times spiral ≈ 0.62 for t10/t11 (≈ 0.19), times edge-on ≈ 0.60
#: for t09 (≈ 0.26), smooth ≈ 0.47 for t07, odd ≈ 0.42 for t08 — rounded.
REACH_THRESHOLDS: dict[str, float] = {
    "t03": 0.30,  # bar
    "t05": 0.30,  # bulge prominence
    "t07": 0.45,  # roundness of smooth galaxies
    "t08": 0.40,  # odd feature (reach = "odd: yes")
    "t09": 0.25,  # bulge shape of edge-on disks
    "t10": 0.20,  # arm winding
    "t11": 0.20,  # arm number
}

# --------------------------------------------------------------------------------------------
# Fact vocabularies
# --------------------------------------------------------------------------------------------

TYPES: tuple[str, ...] = (
    "spiral",
    "disk",  # face-on disk without spiral arms (lenticular-like)
    "edge-on disk",
    "elliptical",
    "merger",
    "irregular",
    "star or artifact",
    "uncertain",
)
_SPIRAL, _DISK, _EDGE, _ELL, _MERGER, _IRREG, _STAR, _UNCERTAIN = range(len(TYPES))

SHAPES = ("round", "in between", "cigar-shaped")  # t07 a16, a17, a18
ARMS = ("1", "2", "3", "4", "more than four")  # t11 a31..a36; a37 "can't tell" states nothing
WINDINGS = ("tight", "medium", "loose")  # t10 a28..a30
BULGES = ("none", "just noticeable", "obvious", "dominant")  # t05 a10..a13
BULGE_SHAPES = ("rounded", "boxy", "none")  # t09 a25..a27
YES_NO = ("no", "yes")

# t08 answers in tree order: ring, lens_or_arc, disturbed, irregular, other, merger, dust_lane.
_ODD_RING, _ODD_LENS, _ODD_DISTURBED, _ODD_IRREG, _ODD_OTHER, _ODD_MERGER, _ODD_DUST = range(7)
#: yes/no fact key → t08 answer position.
ODD_FACTS: dict[str, int] = {
    "merger": _ODD_MERGER,
    "ring": _ODD_RING,
    "dust_lane": _ODD_DUST,
    "lens": _ODD_LENS,
    "disturbed": _ODD_DISTURBED,
    "irregular": _ODD_IRREG,
}

FACT_KEYS: tuple[str, ...] = (
    "type",
    "arms",
    "winding",
    "bar",
    "bulge",
    "edge_on",
    "merger",
    "ring",
    "dust_lane",
    "shape",
    "bulge_shape",
    "lens",
    "disturbed",
    "irregular",
)

#: Every value a fact can take besides ``None`` (not applicable to the type / not stated).
FACT_VALUES: dict[str, tuple[str, ...]] = {
    "type": TYPES,
    "arms": ARMS,
    "winding": WINDINGS,
    "bar": YES_NO,
    "bulge": BULGES,
    "edge_on": YES_NO,
    "shape": SHAPES,
    "bulge_shape": BULGE_SHAPES,
    **{key: YES_NO for key in ODD_FACTS},
}

# --------------------------------------------------------------------------------------------
# Phrases. Captions are "<head>[ with <clause>[, <clause>...] and <clause>]." — lower case, words
# separated by single spaces, commas between clauses, one final period. Hyphens only inside the
# compound words "edge-on" and "cigar-shaped".
# --------------------------------------------------------------------------------------------

# Head phrase rows: (type, shape or None, barred adjective) → variants.
_HEADS: tuple[tuple[int, str | None, bool, tuple[str, ...]], ...] = (
    (_SPIRAL, None, False, ("a spiral galaxy",)),
    (_SPIRAL, None, True, ("a barred spiral galaxy",)),
    (_DISK, None, False, ("a disk galaxy without spiral arms", "a lenticular or armless disk galaxy")),
    (_DISK, None, True, ("a barred disk galaxy without spiral arms", "a barred lenticular or armless disk galaxy")),
    (_EDGE, None, False, ("an edge-on disk galaxy", "a disk galaxy seen edge-on")),
    (_ELL, None, False, ("an elliptical galaxy", "a smooth elliptical galaxy")),
    (_ELL, "round", False, ("a round elliptical galaxy", "a completely round elliptical galaxy")),
    (_ELL, "in between", False, ("a slightly elongated elliptical galaxy", "a moderately elongated elliptical galaxy")),
    (_ELL, "cigar-shaped", False, ("a cigar-shaped elliptical galaxy", "an elongated cigar-shaped elliptical galaxy")),
    (_MERGER, None, False, ("a galaxy merger", "a merger of galaxies", "a system of merging galaxies")),
    (_IRREG, None, False, ("an irregular galaxy", "a galaxy of irregular shape")),
    (_STAR, None, False, ("a star or image artifact rather than a galaxy", "not a galaxy but a star or artifact")),
    (_UNCERTAIN, None, False, ("a galaxy of uncertain type", "a galaxy of unclear morphology")),
)
_HEAD_BASE = {t: i for i, (t, s, b, _) in enumerate(_HEADS) if s is None and not b}  # plain row per type

_BAR_BODY = ("a central bar", "a bar")
# Arm clause = [count ][winding ]noun
_ARM_COUNT = (("a single", "one"), ("two", "a pair of"), ("three",), ("four",), ("more than four",))
_ARM_WINDING = (("tightly wound", "tight"), ("moderately wound",), ("loosely wound", "loose"))
_ARM_NOUN = (("spiral arms", "arms"), ("spiral arm", "arm"))  # plural, singular
_BULGE_BODY = (
    ("no bulge", "no visible bulge"),
    ("a small bulge", "a just noticeable bulge", "a modest bulge"),
    ("an obvious bulge", "a prominent bulge", "a conspicuous bulge"),
    ("a dominant bulge", "a very large bulge"),
)
_BULGE_SHAPE_BODY = (
    ("a rounded bulge", "a round central bulge"),
    ("a boxy bulge", "a boxy central bulge"),
    ("no bulge", "no visible bulge"),
)
_ODD_BODY = (
    ("a ring", "a ring structure"),
    ("a lens or arc", "a lens or arc feature"),
    ("a disturbed appearance", "signs of disturbance"),
    ("an irregular shape", "an irregular appearance"),
    ("",),  # "other": nothing to say
    ("signs of a merger", "a merging companion"),
    ("a dust lane", "a dark dust lane"),
)

# Phrase slots (salts for the per-slot variant choice).
_SLOT_HEAD, _SLOT_BAR_STYLE, _SLOT_BAR, _SLOT_COUNT, _SLOT_WINDING, _SLOT_NOUN = range(6)
_SLOT_BULGE, _SLOT_ODD = 6, 7

# --------------------------------------------------------------------------------------------
# Deciding facts (vectorised)
# --------------------------------------------------------------------------------------------

_SLICES = {q.key: sl for q, sl in GZ2_TREE.question_slices}
_PARENT = {q.key: p for q, p in zip(GZ2_TREE.questions, GZ2_TREE.parent_index)}


def _validate(fractions: np.ndarray) -> np.ndarray:
    try:
        arr = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fractions must be numeric vote fractions: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != len(GZ2_TREE):
        raise ValueError(
            f"fractions must have shape (N, {len(GZ2_TREE)}) — one row per galaxy, columns in "
            f"GZ2_TREE.debiased_columns order — got shape {arr.shape}"
        )
    return arr


def _reach(cum: np.ndarray, q: str) -> np.ndarray:
    parent = _PARENT[q]
    return np.ones(len(cum)) if parent is None else cum[:, parent]


def _winner(cum: np.ndarray, q: str) -> np.ndarray:
    """Per row, the position of the majority answer of ``q`` within the question, or -1."""
    block = cum[:, _SLICES[q]]
    best = block.argmax(axis=1)
    top = np.take_along_axis(block, best[:, None], axis=1)[:, 0]
    reach = _reach(cum, q)
    ok = (reach >= REACH_THRESHOLDS[q]) & (top > ANSWER_MAJORITY * reach)
    return np.where(ok, best, -1).astype(np.int8)


def _decide(fractions: np.ndarray) -> dict[str, np.ndarray]:
    """Integer codes per fact (-1 = not applicable / not stated)."""
    raw = _validate(fractions)
    n = len(raw)
    cum = GZ2_TREE.cumulative(raw)  # NaN → 0

    # Type. The tree path: plurality at t01, then t02, then t04 (ties go to the first answer).
    t01, t02, t04 = (cum[:, _SLICES[q]] for q in ("t01", "t02", "t04"))
    first = t01.argmax(axis=1)
    path = np.select(
        [t01.sum(axis=1) <= 0, first == 0, first == 2, t02.sum(axis=1) <= 0, t02.argmax(axis=1) == 0,
         t04.sum(axis=1) <= 0, t04.argmax(axis=1) == 0],
        [_UNCERTAIN, _ELL, _STAR, _UNCERTAIN, _EDGE, _UNCERTAIN, _SPIRAL],
        default=_DISK,
    ).astype(np.int8)

    odd = _winner(cum, "t08")
    label = derive_labels({col: raw[:, i] for i, col in enumerate(GZ2_TREE.debiased_columns)})
    label_type = np.full(n, -1, dtype=np.int8)
    for name, code in (("spiral", _SPIRAL), ("elliptical", _ELL), ("edge-on", _EDGE), ("merger", _MERGER)):
        label_type[label == name] = code
    keep_label = (label_type >= 0) & ((label_type == path) | ~np.isin(label_type, (_SPIRAL, _EDGE)))
    fallback = np.where((label_type < 0) & (odd == _ODD_IRREG), _IRREG, path)
    typ = np.where(keep_label, label_type, fallback).astype(np.int8)

    # The type decides which odd feature is implied / possible.
    odd = np.where(typ == _MERGER, _ODD_MERGER, odd)
    odd = np.where(typ == _IRREG, _ODD_IRREG, odd)
    odd = np.where(typ == _STAR, -1, odd).astype(np.int8)

    face_on = (typ == _SPIRAL) | (typ == _DISK)
    spiral = typ == _SPIRAL
    edge = typ == _EDGE
    arms = _winner(cum, "t11")
    arms = np.where(arms == 5, -1, arms)  # "can't tell"
    return {
        "type": typ,
        "odd": odd,
        "bar": np.where(face_on, (_winner(cum, "t03") == 0).astype(np.int8), -1).astype(np.int8),
        "bulge": np.where(face_on, _winner(cum, "t05"), -1).astype(np.int8),
        "arms": np.where(spiral, arms, -1).astype(np.int8),
        "winding": np.where(spiral, _winner(cum, "t10"), -1).astype(np.int8),
        "shape": np.where(typ == _ELL, _winner(cum, "t07"), -1).astype(np.int8),
        "bulge_shape": np.where(edge, _winner(cum, "t09"), -1).astype(np.int8),
        "edge_on": np.where(face_on | edge, edge.astype(np.int8), -1).astype(np.int8),
    }


def _lookup(vocab: Sequence[str], codes: np.ndarray) -> np.ndarray:
    """codes (-1 = None) → object array of vocabulary strings / None."""
    table = np.array((None, *vocab), dtype=object)
    return table[codes.astype(np.intp) + 1]


def caption_facts(fractions: np.ndarray) -> dict[str, np.ndarray]:
    """The facts a template caption states, per row: ``FACT_KEYS`` → object arrays of values from
    ``FACT_VALUES[key]`` or ``None`` (not applicable to the row's type, or not stated)."""
    codes = _decide(fractions)
    typ = codes["type"]
    facts = {
        "type": np.array(TYPES, dtype=object)[typ],
        "arms": _lookup(ARMS, codes["arms"]),
        "winding": _lookup(WINDINGS, codes["winding"]),
        "bar": _lookup(YES_NO, codes["bar"]),
        "bulge": _lookup(BULGES, codes["bulge"]),
        "edge_on": _lookup(YES_NO, codes["edge_on"]),
        "shape": _lookup(SHAPES, codes["shape"]),
        "bulge_shape": _lookup(BULGE_SHAPES, codes["bulge_shape"]),
    }
    galaxy = typ != _STAR
    for key, answer in ODD_FACTS.items():
        facts[key] = _lookup(YES_NO, np.where(galaxy, codes["odd"] == answer, -1))
    return {key: facts[key] for key in FACT_KEYS}


# --------------------------------------------------------------------------------------------
# Captions (vectorised)
# --------------------------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _id_hashes(object_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """CRC-32 of each id's UTF-8 text (ints/np ints use their decimal form) as uint64."""
    ids = object_ids.tolist() if isinstance(object_ids, np.ndarray) else object_ids
    text = (i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in ids)
    return np.fromiter((zlib.crc32(t.encode("utf-8")) for t in text), dtype=np.uint64, count=len(ids))


def _variant(h: np.ndarray, slot: int, counts: np.ndarray) -> np.ndarray:
    """Deterministic variant index in [0, counts) per row: splitmix64 of (crc32, slot)."""
    z = h + np.uint64((0x9E3779B97F4A7C15 * (slot + 1)) & _M64)  # array ops wrap mod 2**64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % counts.astype(np.uint64)).astype(np.intp)


def _table(rows: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    table = np.array([list(r) + [r[0]] * (width - len(r)) for r in rows], dtype=np.str_)
    return table, np.array([len(r) for r in rows], dtype=np.intp)


def _pick(rows: Sequence[Sequence[str]], codes: np.ndarray, h: np.ndarray, slot: int) -> np.ndarray:
    """Per row, a variant of phrase ``rows[code]`` ("" where code is -1)."""
    table, counts = _table(rows)
    present = codes >= 0
    c = np.where(present, codes, 0).astype(np.intp)
    out = table[c, _variant(h, slot, counts[c])]
    return np.where(present, out, "")


_HEAD_TABLE = [variants for *_, variants in _HEADS]


def template_captions(object_ids: Sequence[str] | np.ndarray, fractions: np.ndarray) -> list[str]:
    """One caption per row of ``fractions`` (N, 37) — per-question GZ2 vote fractions in
    ``GZ2_TREE`` order — with phrase variants chosen by a stable hash of each object id."""
    raw = _validate(fractions)
    if len(object_ids) != len(raw):
        raise ValueError(f"got {len(object_ids)} object ids for {len(raw)} rows of fractions")
    codes = _decide(raw)
    h = _id_hashes(object_ids)
    typ, bar = codes["type"], codes["bar"]

    # Bar: either the "barred" adjective in the head or a clause, by variant.
    bar_adjective = (bar == 1) & (_variant(h, _SLOT_BAR_STYLE, np.full(len(h), 2)) == 0)
    bar_clause = (bar == 1) & ~bar_adjective

    base = np.array([_HEAD_BASE[t] for t in range(len(TYPES))], dtype=np.intp)[typ]
    head_code = base + bar_adjective  # barred row follows its plain row
    ell = typ == _ELL
    head_code = np.where(ell & (codes["shape"] >= 0), base + 1 + codes["shape"], head_code)
    head = _pick(_HEAD_TABLE, head_code, h, _SLOT_HEAD)

    # Arm clause: [count ][winding ]noun.
    arms, winding = codes["arms"], codes["winding"]
    count = _pick(_ARM_COUNT, arms, h, _SLOT_COUNT)
    wind = _pick(_ARM_WINDING, winding, h, _SLOT_WINDING)
    noun = _pick(_ARM_NOUN, (arms == 0).astype(np.int8), h, _SLOT_NOUN)
    count = np.where(arms >= 0, np.strings.add(count, " "), "")
    wind = np.where(winding >= 0, np.strings.add(wind, " "), "")
    arm_body = np.strings.add(np.strings.add(count, wind), noun)

    bulge_code = np.where(codes["bulge"] >= 0, codes["bulge"], np.where(codes["bulge_shape"] >= 0, 4 + codes["bulge_shape"], -1))
    odd_code = np.where(np.isin(typ, (_MERGER, _IRREG)) | (codes["odd"] == _ODD_OTHER), -1, codes["odd"])

    bodies = [
        (bar_clause, _pick((_BAR_BODY,), np.where(bar_clause, 0, -1), h, _SLOT_BAR)),
        ((arms >= 0) | (winding >= 0), arm_body),
        (bulge_code >= 0, _pick(_BULGE_BODY + _BULGE_SHAPE_BODY, bulge_code, h, _SLOT_BULGE)),
        (odd_code >= 0, _pick(_ODD_BODY, odd_code, h, _SLOT_ODD)),
    ]
    present = np.stack([p for p, _ in bodies], axis=1)
    total = present.sum(axis=1)
    rank = np.cumsum(present, axis=1) - 1
    # "a disk galaxy without spiral arms, with a bar": a comma when the head already has "with".
    first_sep = np.where(np.strings.find(head, " with") >= 0, ", with ", " with ")
    caption = head
    for j, (p, body) in enumerate(bodies):
        sep = np.where(rank[:, j] == 0, first_sep, np.where(rank[:, j] == total - 1, " and ", ", "))
        caption = np.strings.add(caption, np.where(p, np.strings.add(sep, body), ""))
    return np.strings.add(caption, ".").tolist()


# --------------------------------------------------------------------------------------------
# Parsing captions back into facts
# --------------------------------------------------------------------------------------------


def _alternation(phrases: Sequence[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(set(phrases), key=len, reverse=True))


_HEAD_OF = {v: (t, s, b) for t, s, b, variants in _HEADS for v in variants}
_HEAD_RE = re.compile(rf"\b(?:{_alternation(list(_HEAD_OF))})\b")
_COUNT_OF = {v: ARMS[i] for i, vs in enumerate(_ARM_COUNT) for v in vs}
_WINDING_OF = {v: WINDINGS[i] for i, vs in enumerate(_ARM_WINDING) for v in vs}
_ARMS_RE = re.compile(
    rf"\b(?:(?P<count>{_alternation(list(_COUNT_OF))}) )?(?:(?P<winding>{_alternation(list(_WINDING_OF))}) )?"
    r"(?:spiral )?arms?\b"
)
_BAR_RE = re.compile(rf"\b(?:{_alternation(_BAR_BODY)})\b")
_BULGE_OF = {v: BULGES[i] for i, vs in enumerate(_BULGE_BODY) for v in vs}
_BULGE_SHAPE_OF = {v: BULGE_SHAPES[i] for i, vs in enumerate(_BULGE_SHAPE_BODY) for v in vs}
_BULGE_RE = re.compile(rf"\b(?:{_alternation(list(_BULGE_OF))})\b")
_BULGE_SHAPE_RE = re.compile(rf"\b(?:{_alternation(list(_BULGE_SHAPE_OF))})\b")
_ODD_RE = {
    key: re.compile(rf"\b(?:{_alternation([v for v in _ODD_BODY[answer] if v])})\b")
    for key, answer in ODD_FACTS.items()
}


def facts_from_caption(caption: str) -> dict[str, str | None]:
    """Parse a caption in the template language (any variant) back into its facts.

    ``facts_from_caption(template_captions(ids, f)[i]) == {k: caption_facts(f)[k][i] for k in
    FACT_KEYS}``. Free text is read leniently: the first head phrase found decides the type (no
    head → every fact ``None``), the clauses are searched in the rest, in any order.
    """
    text = " ".join(caption.lower().replace(".", " ").split())
    facts: dict[str, str | None] = dict.fromkeys(FACT_KEYS)
    m = _HEAD_RE.search(text)
    if m is None:
        return facts
    typ, shape, barred = _HEAD_OF[m.group(0)]
    rest = text[: m.start()] + " , " + text[m.end() :]
    facts["type"] = TYPES[typ]
    if typ == _STAR:
        return facts

    if typ in (_SPIRAL, _DISK):
        facts["bar"] = "yes" if barred or _BAR_RE.search(rest) else "no"
        b = _BULGE_RE.search(rest)
        facts["bulge"] = _BULGE_OF[b.group(0)] if b else None
    if typ in (_SPIRAL, _DISK, _EDGE):
        facts["edge_on"] = "yes" if typ == _EDGE else "no"
    if typ == _SPIRAL:
        a = _ARMS_RE.search(rest)
        while a is not None and a.group("count") is None and a.group("winding") is None:
            a = _ARMS_RE.search(rest, a.end())  # a bare "arms" says nothing; look further
        if a is not None:
            facts["arms"] = _COUNT_OF.get(a.group("count") or "")
            facts["winding"] = _WINDING_OF.get(a.group("winding") or "")
    if typ == _EDGE:
        b = _BULGE_SHAPE_RE.search(rest)
        facts["bulge_shape"] = _BULGE_SHAPE_OF[b.group(0)] if b else None
    if typ == _ELL:
        facts["shape"] = shape

    implied = {_MERGER: "merger", _IRREG: "irregular"}.get(typ)
    for key, pattern in _ODD_RE.items():
        facts[key] = "yes" if key == implied or pattern.search(rest) else "no"
    return facts
