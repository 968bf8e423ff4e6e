"""GZ2 vote regressor's head: image → the 37 Kaggle cumulative targets, constrained by the
decision tree (the regressor is a sub-graph of ``models.morphology.build_morphology``).

Graph (layer names in quotes)::

    "image" → "backbone" (nested, last layer "features") → "gap"
            → "votes_hidden" Dense(hidden, activation="relu") → "votes_dropout"
            → "answers_raw" Dense(37) → "votes" DecisionTreeLayer        # the model output

``DecisionTreeLayer`` follows Dieleman et al. (2015, the Kaggle Galaxy Zoo winner): per question
ReLU of the raw outputs, normalise to sum 1, then scale every non-root question by the output of
its parent answer, in tree order. Unlike :meth:`DecisionTree.cumulative`, the roots Q1 and Q6
are normalised as well (their Kaggle targets sum to ~1 anyway).
"""

from __future__ import annotations

import keras
from keras import ops

from catalogs.tree import GZ2_TREE, DecisionTree
from models.config import ModelConfig

N_OUTPUTS = len(GZ2_TREE)


def tree_structure(tree: DecisionTree = GZ2_TREE) -> tuple[list[list[int]], list[int]]:
    """``(slices, parents)``: per question (tree order) ``[start, stop)`` in the flat vector and
    the flat index of its parent answer (``-1`` for a root). Plain lists, JSON-serialisable."""
    slices = [[sl.start, sl.stop] for _, sl in tree.question_slices]
    parents = [-1 if p is None else int(p) for p in tree.parent_index]
    return slices, parents


@keras.saving.register_keras_serializable(package="morphcat")
class DecisionTreeLayer(keras.layers.Layer):
    """(N, n_answers) raw scores → (N, n_answers) cumulative answer probabilities.

    For question q with answers ``s:e`` and parent answer ``p`` (``-1`` for a root)::

        r   = relu(x[:, s:e]) + epsilon
        y_q = r / sum(r)                  # exactly sums to 1; all-zero raw scores → uniform
        y_q = y_q * y[:, p]               # only when q has a parent (already computed: tree order)

    The ``epsilon`` (default 1e-7) is added to every answer before normalising, so a question
    whose raw scores are all ≤ 0 yields a uniform distribution instead of NaN, and the sum is 1
    without a separate guard. Consequently each non-root question's answers sum to its parent
    answer's output, every root question sums to 1, and all outputs are ≥ 0 (strictly > 0).

    The structure lives in the config as plain lists (``slices``, ``parents``); it defaults to
    ``GZ2_TREE``. Only Relu, Add, Slice, ReduceSum, Div, Mul and Concat are used, all of which
    tf2onnx converts.
    """

    def __init__(self, slices=None, parents=None, epsilon: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        if (slices is None) != (parents is None):
            raise ValueError("give both slices and parents, or neither (→ GZ2_TREE)")
        if slices is None:
            slices, parents = tree_structure(GZ2_TREE)
        self.slices = [[int(a), int(b)] for a, b in slices]
        self.parents = [int(p) for p in parents]
        self.epsilon = float(epsilon)
        self._validate()

    def _validate(self) -> None:
        if len(self.slices) != len(self.parents):
            raise ValueError("slices and parents must have one entry per question")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        expected_start = 0
        for q, ((start, stop), parent) in enumerate(zip(self.slices, self.parents)):
            if start != expected_start or stop <= start:
                raise ValueError(f"question {q}: slices must tile the output contiguously, got {self.slices}")
            if parent >= start or parent < -1:
                raise ValueError(
                    f"question {q}: parent answer {parent} must be -1 or precede the question (tree order)"
                )
            expected_start = stop
        self.n_outputs = expected_start

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.n_outputs:
            raise ValueError(f"DecisionTreeLayer expects {self.n_outputs} inputs, got {input_shape[-1]}")
        super().build(input_shape)

    def call(self, inputs):
        x = ops.relu(inputs)
        blocks = []  # per question, (N, answers)
        columns = {}  # flat answer index → (N, 1) cumulative output, for children
        for (start, stop), parent in zip(self.slices, self.parents):
            r = x[:, start:stop] + self.epsilon
            y = r / ops.sum(r, axis=-1, keepdims=True)
            if parent >= 0:
                y = y * columns[parent]
            for i in range(start, stop):
                if i in self.parents:
                    columns[i] = y[:, i - start : i - start + 1]
            blocks.append(y)
        return ops.concatenate(blocks, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.n_outputs,)

    def get_config(self):
        config = super().get_config()
        config.update({"slices": self.slices, "parents": self.parents, "epsilon": self.epsilon})
        return config


def regressor_head(pooled, config: ModelConfig, name: str = "votes"):
    """GAP output → ``votes``: ``votes_hidden`` → ``votes_dropout`` → ``answers_raw`` → ``votes``.
    Another ``name`` (a second vote head) prefixes every layer with it instead."""
    x = keras.layers.Dense(config.head.hidden, activation="relu", name=f"{name}_hidden")(pooled)
    x = keras.layers.Dropout(config.head.dropout, name=f"{name}_dropout")(x)
    answers = "answers_raw" if name == "votes" else f"{name}_answers"
    raw = keras.layers.Dense(N_OUTPUTS, name=answers, dtype="float32")(x)  # see classifier_head
    return DecisionTreeLayer(name=name, dtype="float32")(raw)
