"""The least gradio app that animates a plotly figure the way the Playground does: the floor under the explorer's
start-up figures on this machine.

    python benchmarks/floor_app.py --port P [--torch]

One ``gr.Plot`` (elem id ``pg-flow``, as the Playground's) holding a 40 x 40 heatmap and 48 lines, renamed on
every tick of a 0.1-s ``gr.Timer`` (``layout.meta.version``), so ``benchmarks.explorer``'s ``measure_ready`` and
``measure_browser`` time it with the same code as the explorer: launch to ``/gradio_api/info`` answering, page
load to the first new picture. ``--torch`` imports torch first, as the explorer's launch does. Nothing of
``core`` or ``explorer`` is imported: what it takes is gradio's, plotly.js's and (with ``--torch``) torch's.
"""

from __future__ import annotations

import argparse
import math
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--runs-dir", help="ignored (measure_ready passes it to every app)")
    parser.add_argument("--torch", action="store_true", help="import torch first, as the explorer does")
    args = parser.parse_args()
    if args.torch:
        import torch  # noqa: F401

    import gradio as gr
    import plotly.graph_objects as go

    def figure(tick: int) -> go.Figure:
        phase = tick / 10
        grid = [[math.sin(i / 6 + phase) * math.cos(j / 6) for j in range(40)] for i in range(40)]
        fig = go.Figure(go.Heatmap(z=grid, showscale=False))
        for k in range(48):
            xs = [t / 10 for t in range(11)]
            fig.add_trace(go.Scatter(x=xs, y=[math.sin(k + x + phase) for x in xs], mode="lines", showlegend=False))
        fig.update_layout(meta={"version": str(tick)}, height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10})
        return fig

    with gr.Blocks() as demo:
        ticks = gr.State(0)
        plot = gr.Plot(figure(0), elem_id="pg-flow")
        gr.Timer(0.1).tick(lambda n: (n + 1, figure(n + 1)), ticks, [ticks, plot], show_progress="hidden")
    demo.launch(server_name="127.0.0.1", server_port=args.port, share=False)


if __name__ == "__main__":
    main()
