"""core must not pull in the UI: importing it in a fresh interpreter leaves gradio, plotly, explorer out."""

import json
import subprocess
import sys

FORBIDDEN = ("gradio", "plotly", "explorer")

PROBE = f"""
import json, sys
import core
roots = {{m.split('.')[0] for m in sys.modules}}
print(json.dumps({{"forbidden": sorted(roots & set({FORBIDDEN!r})), "torch": "torch" in roots,
                  "methods": list(core.METHODS)}}))
"""


def test_core_does_not_import_ui():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["forbidden"] == []
    assert result["torch"]  # the probe sees what core does import
    assert result["methods"] == ["anderson", "broyden", "fixed_point", "homotopy"]
