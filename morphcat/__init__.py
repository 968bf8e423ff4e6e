"""morphcat from Python: the library behind the ``morphcat`` command, for notebooks and scripts.

    import morphcat

    bundle = morphcat.open_bundle("bundle/")
    table = bundle.predict(["m51.jpg", "ngc1300.jpg"])  # a polars DataFrame, one row per image
    summary = morphcat.annotate("catalog.parquet", bundle="bundle/", out="annotations/")
    morphcat.train(["catalog.parquet"], out="models/")  # needs the `train` extra (TensorFlow)

Importing morphcat, opening a bundle, predicting and annotating need no TensorFlow; ``train``
imports it when called. See docs/api.md.
"""

from morphcat.api import Bundle, annotate, open_bundle, train

__all__ = ["Bundle", "annotate", "open_bundle", "train"]
