"""Deterministic shard rows for the output-folder tests, importable by their writer processes
(which stay light: no pytest, no polars)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from catalogs.outputs import errors_table, predictions_table
from catalogs.shards import Shard, write_shard

CLASSES = ("spiral", "elliptical")


def catalog(n: int = 10) -> pa.Table:
    return pa.table({"object_id": [f"{587722981741363000 + i}" for i in range(n)],
                     "image_path": [f"images/{i}.jpg" for i in range(n)],
                     "ra": np.linspace(0.0, 10.0, n), "label": ["spiral"] * n})


def shard_tables(plan, shard: Shard, table: pa.Table):
    """Deterministic rows for a shard: every third row failed, the others are predicted."""
    rows = np.arange(shard.start, shard.stop)
    ids = np.array(table.column("object_id").to_pylist(), dtype=object)
    failed = rows % 3 == 2
    good = rows[~failed]
    probs = np.stack([good / 10.0 % 1.0, 1 - good / 10.0 % 1.0], axis=1)
    predictions = predictions_table(CLASSES, object_ids=list(ids[good]), probs=probs, bundle_id=plan.bundle_id,
                                    run_id=plan.run_id)
    bad = rows[failed]
    errors = errors_table(object_ids=list(ids[bad]), image_paths=[f"images/{r}.jpg" for r in bad],
                          stages=["input"] * len(bad), error_types=["truncated"] * len(bad),
                          messages=["cut short"] * len(bad), bundle_id=plan.bundle_id, run_id=plan.run_id)
    return predictions, errors


def write_all(plan, table, skip=frozenset()):
    for shard in plan.shards:
        if shard.index not in skip:
            write_shard(plan, shard, *shard_tables(plan, shard, table))
