"""``morphcat app``: the Streamlit web demo over a model bundle and an annotations folder.

``analysis`` (one uploaded or catalog image → what the bundle says), ``figures`` (matplotlib
charts and the Grad-CAM overlay), ``catalog_view`` (an annotations folder as a filterable polars
frame), ``launch`` (the ``streamlit run`` command line) are plain modules; ``app`` is the
Streamlit script itself. None imports TensorFlow: the app serves the ONNX bundle only.
"""
