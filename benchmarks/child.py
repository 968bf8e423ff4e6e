"""``python -m benchmarks.child CATALOG BUNDLE OUT BATCH [SHARD_SIZE]``: one ``catalog-annotate`` run in a
process of its own, its summary as JSON on the last line of stdout (the benchmark reads the
run's peak RSS from it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from flows.annotate_flows import catalog_annotate

    catalog, bundle, out, batch, *shard = argv
    options = {"shard_size": int(shard[0])} if shard else {}
    summary = catalog_annotate(catalog=Path(catalog), bundle=Path(bundle), out=Path(out), batch_size=int(batch),
                               **options)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
