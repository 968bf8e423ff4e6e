"""``python -m benchmarks.child CATALOG BUNDLE OUT BATCH [SHARD_SIZE]``: one annotation run in a
process of its own, its summary as JSON on the last line of stdout (the benchmark reads the
run's peak RSS from it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from export.serve.catalog import annotate_catalog

    catalog, bundle, out, batch, *shard = argv
    options = {"shard_size": int(shard[0])} if shard else {}
    summary = annotate_catalog(catalog=Path(catalog), bundle=Path(bundle), out=Path(out), batch_size=int(batch),
                               **options)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
