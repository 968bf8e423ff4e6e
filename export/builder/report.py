"""A bundle's manifest as markdown: what it holds, parity per output, int8 and float16 against fp32.
Printed by ``morphcat export`` and published as the flow's Prefect artifact."""

from __future__ import annotations


def _g(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def bundle_markdown(manifest: dict, path: str = "") -> str:
    image = manifest["image"]
    lines = [f"## Model bundle {manifest['bundle_id']}" + (f" ({path})" if path else ""), "",
             f"Models: {', '.join(sorted(manifest['models']))}; input {image['size']}×{image['size']} px from the "
             f"central {image['crop']:g} of each cutout; opset {manifest['opset']}.", "",
             "| file | bytes |", "|---|---:|"]
    lines += [f"| {name} | {rec['bytes']:,} |" for name, rec in sorted(manifest["files"].items())]
    parity = manifest["parity"]
    lines += ["", f"Parity with Keras on {parity['batch']}:", "",
              "| model | output | max abs diff | atol | rows/s onnxruntime vs Keras |", "|---|---|---:|---:|---|"]
    agreements = []
    for kind, model in sorted(parity["models"].items()):
        for name, figures in model["files"].items():
            speed = figures.get("speed")
            for i, (output, f) in enumerate(figures["outputs"].items()):
                diff = _g(f["max_abs_diff"]) + (f" ({_g(f['relative_diff'])} of scale)" if "relative_diff" in f else "")
                rate = ""
                if speed and i == 0:  # one figure per file, on its first output's row
                    rate = (f"{speed['ort_rows_per_s']:g} vs {speed['keras_rows_per_s']:g} "
                            f"(×{speed['ort_rows_per_s'] / speed['keras_rows_per_s']:.1f})")
                lines.append(f"| {name} | {output} | {diff} | {_g(f['atol'])} | {rate} |")
        agreements += [f"{k.replace('_', ' ')} {v:.2%}" for k, v in model.items() if k.endswith("agreement")]
    if agreements:
        lines += ["", "Agreement: " + ", ".join(agreements) + "."]
    if "merged" in manifest:
        merged, figures = manifest["merged"], parity["merged"]
        worst = max((f.get("relative_diff", f["max_abs_diff"]) for outs in figures["files"].values()
                     for f in outs.values()), default=0.0)
        speed = figures["speed"]
        lines += ["", f"{merged['file']} computes {', '.join(merged['computes'])} in one graph (shared weights run "
                      f"once): largest diff against Keras {_g(worst)}, within every file's atol; "
                      f"{speed['ort_rows_per_s']:g} rows/s against {speed['separate_files_rows_per_s']:g} for the "
                      "separate files."]
    for precision, where in (("int8", "the CPU"), ("fp16", "the GPU")):
        if precision not in manifest:
            continue
        variant = manifest[precision]
        c, gate = variant["comparison"], variant["gate"]
        verdict = (f"passed: served where {where} runs it faster" if gate["passed"]
                   else "failed (" + "; ".join(gate["failed"]) + "): never served")
        calibrated = f"; calibrated on {variant['calibration']}" if "calibration" in variant else ""
        lines += ["", f"{variant['file']}: {variant['method']}{calibrated}.", "",
                  f"Against fp32 on {variant['checked_on']}: "
                  + ", ".join(f"{k.replace('_', ' ')} {_g(c[k])}" for k in
                              ("class_agreement", "caption_agreement", "cam_peak_agreement", "vote_rmse_vs_fp32",
                               "max_prob_diff") if k in c)
                  + f"; {c['bytes_fp32']:,} → {c[f'bytes_{precision}']:,} bytes; {c['images_per_s_fp32']:g} → "
                  f"{c[f'images_per_s_{precision}']:g} images/s on the CPU (×{c['speedup']:g}). Gate {verdict}."]
    return "\n".join(lines)
