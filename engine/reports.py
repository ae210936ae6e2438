"""HTML reports with embedded plots (matplotlib, Agg): readable in QGIS's Results Viewer and in a browser."""

import base64
import html
import io

from .distortion import DistortionResult


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
Theoretical cost: (R / (R - 2c))&sup2; pixels computed per output pixel.</p>
<table><tr><th>crop</th><th>efield</th><th>output</th><th>RMSE</th><th>MAE</th><th>max |error|</th>
<th>pixels with |error| &gt; {result.tolerance:g}</th><th>cost</th><th>time (s)</th><th>s / Mpx</th>
<th>pixels compared</th></tr>{rows}</table>
<p><img src="data:image/png;base64,{distortion_plot(result)}" alt="RMSE and cost against crop"/></p>
<p>The smallest crop whose RMSE is at the level of floating-point noise is the exact valid part; smaller crops
are cheaper but keep pixels polluted by the zero padding at block borders (blocking artifacts).</p>
</body></html>"""
