"""Every HTML report of the engine: model analysis, distortion comparison (with a matplotlib plot, Agg).

Readable in QGIS's Results Viewer and in a browser; plots are embedded as base64 PNGs.
"""

import base64
import html
import io

from .analysis import ModelAnalysis
from .distortion import DistortionResult
from .graph import px, span_text
from .model import split_crop


def png_base64(figure) -> str:
    """A matplotlib figure as a base64 PNG for an <img> tag."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def distortion_plot(result: DistortionResult) -> str:
    """RMSE (log scale) and theoretical cost against the crop, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    crops = [r.crop for r in result.crops]
    figure = Figure(figsize=(6.4, 3.6))
    axis = figure.add_subplot(1, 1, 1)
    axis.plot(crops, [max(r.rmse, 1e-12) for r in result.crops], "o-", color="tab:red", label="RMSE vs exact")
    axis.set_yscale("log")
    axis.set_xlabel("crop (output pixels on each side)")
    axis.set_ylabel("RMSE (vector, over bands)", color="tab:red")
    cost = axis.twinx()
    cost.plot(crops, [r.theoretical_cost for r in result.crops], "s--", color="tab:blue", label="cost")
    cost.plot(crops, [r.seconds_per_mpx / max(result.crops[0].seconds_per_mpx, 1e-12) for r in result.crops],
              "x:", color="tab:green", label="measured time / crop-0 time")
    cost.set_ylabel("pixels computed per output pixel", color="tab:blue")
    figure.legend(loc="upper center", ncol=3, fontsize=8)
    axis.set_title(f"Receptive field {result.rfield}: exactness vs cost", fontsize=10)
    return png_base64(figure)


def distortion_html(result: DistortionResult, source_names: list) -> str:
    """The distortion comparison as an HTML page: a table, the plot and how to read them."""
    rows = "".join(
        f"<tr><td>{r.crop}</td><td>{r.efield}</td><td>{html.escape(r.output_name)}"
        f"{f' cropped {r.engine_crop}' if r.engine_crop else ''}</td><td>{r.rmse:.3g}</td><td>{r.mae:.3g}</td>"
        f"<td>{r.max_abs_error:.3g}</td><td>{100 * r.share_above:.2f} %</td><td>{r.theoretical_cost:.2f}</td>"
        f"<td>{r.seconds:.2f}</td><td>{r.seconds_per_mpx:.2f}</td><td>{r.pixels}</td></tr>"
        for r in result.crops)
    reference = result.reference_output + (f" cropped {result.reference_crop}" if result.reference_crop else "")
    return f"""<html><head><meta charset="utf-8"><title>Distortion comparison</title>
<style>body{{font-family:sans-serif}} td,th{{border:1px solid #999;padding:2px 6px;text-align:right}}
table{{border-collapse:collapse}}</style></head><body>
<h2>Distortion comparison (cropping vs exactness vs cost)</h2>
<p>Receptive field R = {result.rfield} px of {html.escape(source_names[0])} (the other sources keep their
ratio). For each crop c the model ran as OTBTF does (OTBTF grid, blocks of the expression field R - 2c) and
was compared with the exact result ({html.escape(reference)}, the seamless valid part) over their common
geographic extent. RMSE is the seed's vector RMSE: sqrt(mean over pixels of the sum over bands of d&sup2;).
Theoretical cost: (R / (R - 2c))&sup2; pixels computed per output pixel. The measured crop, the exact
reference's, is {result.measured_crop}: the RMSE returned by default.</p>
<table><tr><th>crop</th><th>efield</th><th>output</th><th>RMSE</th><th>MAE</th><th>max |error|</th>
<th>pixels with |error| &gt; {result.tolerance:g}</th><th>cost</th><th>time (s)</th><th>s / Mpx</th>
<th>pixels compared</th></tr>{rows}</table>
<p><img src="data:image/png;base64,{distortion_plot(result)}" alt="RMSE and cost against crop"/></p>
<p>The smallest crop whose RMSE is at the level of floating-point noise is the exact valid part; smaller crops
are cheaper but keep pixels polluted by the zero padding at block borders (blocking artifacts).</p>
</body></html>"""


def table(rows, header=None) -> str:
    cells = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table border='1' cellspacing='0' cellpadding='3'>{cells}{body}</table>"


FORMULAS = """
<ul>
<li>Convolution and pooling, kernel k (dilated: (k − 1)·d + 1), stride s, on x valid pixels:
 <b>⌊(x − k)/s⌋ + 1</b> valid pixels.</li>
<li>Transposed convolution, TF "same": <b>s·x + s − k</b>. otbtf's tutorial writes x·s − k + 2, which is exact
 only for s = 2.</li>
<li>Element-wise ops on several maps (skip sums, concatenation): the valid window is the <b>intersection</b> of
 the operands' windows, not only the smaller length.</li>
<li>Cropping (<code>&lt;name&gt;_cropN</code>, slices): the window shifts by the crop; padding adds pixels that
 are not exact; a resize maps each output pixel to the input pixels it interpolates.</li>
<li>The valid window itself comes from each op's exact index map: an output pixel is exact when every input
 pixel it reads is exact. TF "same" padding puts the odd padding pixel after the data, hence windows that are
 not centred.</li>
<li>Recommended: receptive field rf = source 1's size, crop c = the smallest <code>_cropN</code> output ≥ the
 exact crop whose expression field <b>efield = rf − 2c</b> keeps tiles on the total-stride lattice.</li>
</ul>
"""


def analysis_html(analysis: ModelAnalysis) -> str:
    """An HTML page for QGIS's Results Viewer (or a browser)."""
    a = analysis
    crop, lost = a.recommended_crop(), a.probe.lost
    sources = ", ".join(f"{p} {px(s)} px (pixel = {st[0]} source-1 px)"
                        for p, s, st in zip(a.placeholders, a.sizes, a.steps))
    recommendation = [("Receptive field (source 1, rf)", f"{a.rfield} px"),
                      ("Output to serve", a.recommended_output),
                      ("Crop (output pixels a side)", crop if crop in a.crops else f"{crop} (engine crop of "
                                                                                   f"{a.output_name})"),
                      ("Expression field (efield = rf − 2 × crop)", f"{a.efield} px"),
                      ("Total stride (tile origins on multiples of it)", f"{a.total_stride} px")]
    measured = [("Output size for one tile", px(a.output_size)),
                ("Pixels lost (left, top, right, bottom)", ", ".join(map(str, lost))),
                ("Valid window", span_text(a.measured_window)),
                ("Exact crop (smallest symmetric crop)", a.probe.exact_crop),
                ("Measured on", a.data)]
    parts = [f"<h2>Model analysis: receptive field and valid part</h2><p>Model <code>{html.escape(a.model_dir)}"
             f"</code>; sources {html.escape(sources)}; output analysed: <b>{html.escape(a.output_name)}</b>.</p>",
             "<h3>Recommendation</h3>", table(recommendation)]
    if a.efield == 0:
        w = a.working
        parts.append(f"<p><b>No exact valid part fits a {a.rfield} px receptive field</b>: "
                     + (f"use {w.rfield} px, the smallest size that has one: serve {html.escape(w.recommended_output)}"
                        f" (crop {w.recommended_crop()}) with expression field {w.efield} px (sizes "
                        f"{html.escape(', '.join(f'{p} {px(s)}' for p, s in zip(w.placeholders, w.sizes)))}). "
                        "The algorithm's outputs are for that size.</p>" if w else
                        f"raise source 1's size above {2 * crop * a.output_pixel} px.</p>"))
    parts += ["<h3>Valid window, measured</h3>", table(measured)]
    if a.theory is not None and a.theory.layers:
        rows = [(layer.name, layer.operation, px(layer.kernel) if layer.kernel else "–",
                 px(layer.stride) if layer.stride else "–", px(layer.size), px(layer.valid),
                 span_text(layer.window), layer.formula) for layer in a.theory.layers]
        parts += ["<h3>Valid sizes, from the graph</h3>",
                  table(rows, ("layer", "operation", "kernel", "stride", "output size", "valid output size",
                                "valid window", "formula (textbook)"))]
        outs = [(name, px(geo.size), px((geo.x.valid, geo.y.valid)), span_text(geo.window),
                 "empty" if 0 in geo.size else "yes" if (geo.x.valid, geo.y.valid) == geo.size else "no")
                if geo else (name, "?", "?", "?", "?")
                for name, geo in sorted(a.theory.outputs.items(), key=lambda item: split_crop(item[0]))]
        parts += ["<h3>Outputs, from the graph</h3>",
                  table(outs, ("output", "size", "valid size", "valid window", "exact"))]
    disagreements = a.disagreements
    if disagreements:
        parts += ["<h3>Theory and measurement</h3><ul>"] + [f"<li>{html.escape(d)}</li>" for d in disagreements]
        parts.append("</ul>")
    if a.theory is not None and a.theory.issues:
        parts += ["<h3>Not interpreted (the measurement stands alone there)</h3><ul>"]
        parts += [f"<li>{html.escape(i)}</li>" for i in a.theory.issues] + ["</ul>"]
    if a.notes:
        parts += ["<h3>Notes</h3><ul>"] + [f"<li>{html.escape(n)}</li>" for n in a.notes] + ["</ul>"]
    parts += ["<h3>Formulas</h3>", FORMULAS]
    return "<html><head><meta charset='utf-8'><title>Model analysis</title></head><body>" + "".join(parts) + \
        "</body></html>"
