"""The Streamlit script of ``morphcat app`` (``streamlit run`` runs it; see ``flows.webapp.launch``).

Two views: **Single image** (upload a cutout or pick one from the annotated catalog → class
probabilities, vote fractions per GZ2 question, caption, Grad-CAM overlay, out-of-distribution
flag) and **Catalog** (an annotations folder filtered with polars: gallery, class counts,
confidence histogram, downloads). Being the page itself, this module runs on import; the work is
in the plain modules beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnxruntime
import streamlit as st

from catalogs.contract import resolve_image_path
from catalogs.errors import MorphcatError
from catalogs.imaging import ImageError
from catalogs.sources import MIN_SOURCE_SNR
from export.serve.runtime import open_bundle
from flows.webapp import analysis, catalog_view, figures
from flows.webapp.launch import parse_script_arguments

GALLERY_PAGE = 12
GALLERY_COLUMNS = 4
PICK_LIMIT = 5000  # object ids offered in the catalog picker (a selectbox, not a search engine)
SINGLE, CATALOG = "Single image", "Catalog"


@st.cache_resource(show_spinner="Opening the model bundle…")
def _bundle(path: str):
    return open_bundle(path, device="cpu", require=("classifier",))


@st.cache_resource
def _annotations(path: str):
    return catalog_view.open_annotations(Path(path))


@st.cache_resource(show_spinner="Reading the catalog…")
def _catalog(annotations_path: str, catalog_path: str | None):
    return catalog_view.locate_catalog(_annotations(annotations_path), None if catalog_path is None else Path(catalog_path))


@st.cache_data(max_entries=64, show_spinner=False)
def _gallery_images(bundle_path: str, root: str, image_paths: tuple[str, ...]) -> list:
    """Per image: (model view, Grad-CAM overlay), or the reason it cannot be shown."""
    bundle = _bundle(bundle_path)
    shown: list = []
    prepared = []
    for relative in image_paths:
        try:
            image = analysis.prepare_file(resolve_image_path(Path(root), relative), bundle.image)
        except (ImageError, MorphcatError) as exc:
            shown.append(str(exc))
            continue
        prepared.append((len(shown), image))
        shown.append(None)
    results = analysis.analyse(bundle, [p.model for _, p in prepared])
    for (slot, image), result in zip(prepared, results):
        shown[slot] = (image.view, figures.cam_overlay(image.view, result.cam))
    return shown


def _show_analysis(image: analysis.PreparedImage, result: analysis.ImageAnalysis, title: str,
                   threshold: float) -> None:
    with st.container(key="prediction"):
        st.subheader(f"{result.label} ({result.confidence:.0%})")
        st.caption(f"predicted class of {title}")
    with st.container(key="ood"):
        measures = (f"OOD score {result.ood_score:.3g} (flagged above {threshold:g}), centred-source "
                    f"S/N {result.source_snr:.3g} (flagged below {MIN_SOURCE_SNR:g})")
        if result.ood_flag:
            st.warning(f"Out of distribution: probably not a galaxy like those the models learnt from. {measures}")
        else:
            st.success(f"In distribution. {measures}")
    with st.container(key="caption"):
        if result.caption is None:
            st.caption("Caption: this bundle has no captioner")
        else:
            st.markdown(f"**Caption:** {result.caption}")
    if result.note:
        st.caption(f"Input converted: {result.note}")
    shown, overlay, chart = st.columns([1, 1, 1.4])
    shown.image(image.shown, caption=f"{title} (whole image)", width="stretch", alt="input image")
    with overlay.container(key="overlay"):
        # PNG: the overlay reaches the browser pixel for pixel (Streamlit would send JPEG).
        st.image(figures.cam_overlay(image.view, result.cam), width="stretch", alt="Grad-CAM overlay",
                 caption="Grad-CAM of the predicted class over the central crop the model sees", output_format="PNG")
    with chart.container(key="probabilities"):
        st.pyplot(figures.probabilities_figure(result.class_names, result.probs))
    if result.votes is None:
        st.caption("Vote fractions: this bundle has no regressor")
    else:
        with st.container(key="votes"):
            st.pyplot(figures.votes_figure(result.votes))
        with st.expander("Vote fractions as a table"):
            st.dataframe(analysis.votes_table(result.votes), hide_index=True)


def single_image_view(bundle_path: str, annotations: str | None, catalog_path: str | None) -> None:
    bundle = _bundle(bundle_path)
    sources = ["Upload a cutout"] + (["Pick from the catalog"] if annotations else [])
    source = st.radio("Image", sources, horizontal=True, label_visibility="collapsed")
    if source == "Upload a cutout":
        upload = st.file_uploader(f"Galaxy cutout: JPEG, PNG, TIFF or FITS, up to {analysis.MAX_UPLOAD_MB} MB",
                                  type=list(analysis.UPLOAD_SUFFIXES))
        if upload is None:
            return
        try:
            image = analysis.prepare_upload(upload.name, upload.getvalue(), bundle.image)
        except ImageError as exc:
            with st.container(key="upload_error"):
                st.error(f"Cannot use {upload.name}: {exc.reason} — {exc.message}")
            return
        title, ids = upload.name, None
    else:
        catalog = _catalog(annotations, catalog_path)
        ids = catalog.table.column("object_id").to_pylist()
        object_id = st.selectbox(f"Object ({len(ids)} in the catalog"
                                 + (f", the first {PICK_LIMIT} listed)" if len(ids) > PICK_LIMIT else ")"),
                                 ids[:PICK_LIMIT])
        row = ids.index(object_id)
        try:
            image = analysis.prepare_file(catalog.image_file(row), bundle.image)
        except (ImageError, MorphcatError) as exc:
            st.error(f"Cannot use object {object_id}: {exc}")
            return
        title = f"object {object_id}"
        ids = [object_id]
    try:
        result = analysis.analyse(bundle, [image.model], ids)[0]
    except ValueError as exc:
        st.error(str(exc))
        return
    _show_analysis(image, result, title, bundle.ood_threshold)


def _filters(rows) -> catalog_view.Filters:
    st.sidebar.subheader("Filters")
    classes = sorted(catalog_view.class_counts(rows)["label_pred"].to_list())
    chosen = st.sidebar.multiselect("Predicted class", classes, placeholder="all classes")
    low, high = st.sidebar.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01)
    words = st.sidebar.text_input("Caption words (all must appear)", key="caption_words")
    ood = st.sidebar.radio("Out-of-distribution flag", catalog_view.OOD_CHOICES, horizontal=True)
    converted = st.sidebar.checkbox("Only inputs that needed a conversion")
    return catalog_view.Filters(tuple(chosen), low, high, words, ood, converted)


def catalog_view_page(bundle_path: str, annotations: str, catalog_path: str | None) -> None:
    folder = _annotations(annotations)
    run = folder.runs[-1] if len(folder.runs) == 1 else st.sidebar.selectbox("Run", folder.runs,
                                                                                 index=len(folder.runs) - 1)
    every = folder.scan(run).collect()
    filters = _filters(every)
    rows = catalog_view.apply_filters(every.lazy(), filters).collect()
    errors = folder.scan(run, "errors").collect()
    with st.container(key="catalog_summary"):
        st.markdown(f"**{rows.height} of {every.height} objects** match · run `{run}` · "
                    f"{errors.height} objects could not be annotated")
    if every["ood_flag"].null_count() == every.height:
        st.caption("The out-of-distribution flag was not computed in this run.")
    left, right = st.columns(2)
    counts = catalog_view.class_counts(rows)
    left.pyplot(figures.class_counts_figure(counts["label_pred"].to_list(), counts["objects"].to_list()))
    right.pyplot(figures.confidence_figure(rows["confidence"].to_numpy()))
    down_parquet, down_csv = st.columns(2)
    down_parquet.download_button("Download the filtered table (Parquet)", catalog_view.table_bytes(rows, "parquet"),
                                 file_name=f"morphcat-{run}-filtered.parquet", mime="application/vnd.apache.parquet")
    down_csv.download_button("Download the filtered table (CSV)", catalog_view.table_bytes(rows, "csv"),
                             file_name=f"morphcat-{run}-filtered.csv", mime="text/csv")
    if errors.height:
        with st.expander(f"{errors.height} objects could not be annotated"):
            st.dataframe(errors.select("object_id", "error_type", "message"), hide_index=True)
    _gallery(bundle_path, folder, run, rows, annotations, catalog_path)
    with st.expander("The filtered table"):
        st.dataframe(rows, hide_index=True)


def _gallery(bundle_path: str, folder, run: str, rows, annotations: str, catalog_path: str | None) -> None:
    st.subheader("Gallery")
    if rows.height == 0:
        st.info("No object matches the filters.")
        return
    try:
        catalog = _catalog(annotations, catalog_path)
    except MorphcatError as exc:
        st.warning(f"No thumbnails: {exc}")
        return
    bundle = _bundle(bundle_path)
    if folder.bundle_id(run) != bundle.bundle_id:
        st.caption(f"Overlays are computed by the served bundle {bundle.bundle_id}; this run was annotated by "
                   f"{folder.bundle_id(run)}.")
    pages = -(-rows.height // GALLERY_PAGE)
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1) if pages > 1 else 1
    shown = catalog_view.with_image_paths(rows.slice((page - 1) * GALLERY_PAGE, GALLERY_PAGE), catalog)
    images = _gallery_images(bundle_path, str(catalog.root), tuple(shown["image_path"].fill_null("").to_list()))
    columns = st.columns(GALLERY_COLUMNS)
    for i, (row, image) in enumerate(zip(shown.iter_rows(named=True), images)):
        with columns[i % GALLERY_COLUMNS].container(border=True, key=f"gallery_{i}"):
            label = f"**{row['object_id']}** · {row['label_pred']} ({row['confidence']:.0%})"
            if row["ood_flag"]:
                label += " · ⚠ OOD"
            st.markdown(label)
            if isinstance(image, str):
                st.error(image)
            else:
                st.image(list(image), caption=["cutout (model crop)", "Grad-CAM"], width=120,
                         alt=["thumbnail", "Grad-CAM overlay"])
            st.caption(row["caption"] or "(no caption)")


def main() -> None:
    args = parse_script_arguments(sys.argv[1:])
    st.set_page_config(page_title="morphcat", layout="wide")
    bundle_path = str(args.bundle)
    annotations = None if args.annotations is None else str(args.annotations)
    catalog_path = None if args.catalog is None else str(args.catalog)
    try:
        bundle = _bundle(bundle_path)
    except MorphcatError as exc:
        st.error(f"Cannot serve the bundle: {exc}")
        return
    st.sidebar.title("morphcat")
    views = [SINGLE] + ([CATALOG] if annotations else [])
    view = st.sidebar.radio("View", views)
    with st.sidebar.container(key="runtime"):
        st.caption(f"Bundle {bundle.bundle_id}: {', '.join(sorted(bundle.has))}; "
                   f"{bundle.image.size} px inputs; onnxruntime {onnxruntime.__version__} on {bundle.provider}; "
                   f"TensorFlow {'loaded' if 'tensorflow' in sys.modules else 'not loaded'}")
    try:
        if view == SINGLE:
            st.title("Classify a galaxy")
            single_image_view(bundle_path, annotations, catalog_path)
        else:
            st.title("Annotated catalog")
            catalog_view_page(bundle_path, annotations, catalog_path)
    except MorphcatError as exc:
        st.error(str(exc))


main()
