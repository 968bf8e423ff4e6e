"""Training targets derived from vote fractions, added to a catalog in one place.

Where a catalog has all 37 GZ2 vote-fraction columns, ``label`` (the 5-class rule) and
``caption`` (the templates) are derived from them unless the source already supplied its own.
Real Hart16 rows sometimes lack a debiased value for one answer; as in the seed's rule, a missing
fraction counts as below threshold. Rows with no vote fractions at all get null targets, never a
guessed class.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from catalogs.captions import template_captions
from catalogs.contract import Catalog, conform
from catalogs.labels import derive_labels
from catalogs.tree import GZ2_TREE


def vote_matrix(table: pa.Table, columns=GZ2_TREE.debiased_columns) -> np.ndarray:
    """The (N, 37) per-question vote fractions in tree order; NaN where a value is null."""
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns])


def raw_vote_matrix(table: pa.Table) -> np.ndarray:
    """:func:`vote_matrix` of the raw (user-weighted, not debiased) fractions."""
    return vote_matrix(table, GZ2_TREE.weighted_columns)


def kaggle_targets(table: pa.Table) -> np.ndarray:
    """The Kaggle challenge's 37 cumulative targets for every row."""
    return GZ2_TREE.cumulative(vote_matrix(table))


def with_derived_targets(table: pa.Table) -> pa.Table:
    """Add ``label`` and ``caption`` from the vote fractions where the table has votes and
    lacks those columns. Rows whose vote fractions are all missing get nulls."""
    if not all(c in table.column_names for c in GZ2_TREE.debiased_columns):
        return table
    votes = vote_matrix(table)
    has_votes = ~np.isnan(votes).all(axis=1)
    if "label" not in table.column_names:
        labels = derive_labels({c: votes[:, i] for i, c in enumerate(GZ2_TREE.debiased_columns)})
        table = table.append_column("label", pa.array(np.where(has_votes, labels, None).tolist(), pa.string()))
    if "caption" not in table.column_names:
        ids = table.column("object_id").to_numpy(zero_copy_only=False)
        captions = np.asarray(template_captions(ids, votes), dtype=object)
        table = table.append_column("caption", pa.array(np.where(has_votes, captions, None).tolist(), pa.string()))
    return table


def catalog_with_targets(catalog: Catalog) -> Catalog:
    """``catalog`` with its derived targets (:func:`with_derived_targets`), checked against the
    catalog contract: what ingest and the synthetic survey write."""
    table = conform(with_derived_targets(catalog.table), f"{catalog.source_format} catalog")
    return Catalog(table, catalog.root, catalog.source_format)
