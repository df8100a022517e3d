"""What the last run gave, in a few lines: the last thing ``make repro`` prints, after DVC's own messages.

    python scripts/summary.py [--metrics metrics]

It reads the metrics files the stages wrote (nothing is computed again) and says where the report is and how
to compare runs. A metrics file that is missing (a stage not run yet) is named as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mm(x) -> str:
    return "n/a" if x is None else f"{x:.1f} mm"


def summary_lines(folder: str | Path = "metrics", reports: str | Path = "reports") -> list[str]:
    """The summary of the metrics in ``folder`` (the stages' JSON files), one string a line."""
    folder = Path(folder)
    dp, iuv, kp, ev = (_load(folder, f"{n}.json") for n in ("densepose", "iuv", "keypoints", "eval"))
    lines = ["densepose3d: the last run"]
    if dp is not None:
        lines.append(f"  densepose  {dp.get('instances', '?')} instances from source {dp.get('source', '?')} "
                     f"({dp.get('train', '?')} train, {dp.get('test', '?')} test)")
    if iuv is not None and kp is not None:
        lines.append(f"  keypoints  {kp.get('instances_out', '?')} instances kept of {iuv.get('instances_in', '?')}; "
                     f"median correspondence error {kp.get('median_error_px', float('nan')):.1f} px")
    if ev is None:
        lines.append(f"  evaluate   not run yet: no {folder / 'eval.json'}")
    elif "mpjpe_mm" in ev:
        flat, mpjpe = ev.get("flat_mpjpe_mm"), ev.get("mpjpe_mm")
        ratio = f"{mpjpe / flat:.2f} of " if mpjpe is not None and flat else ""
        lines.append(f"  evaluate   MPJPE {_mm(mpjpe)} on {ev.get('test_instances', '?')} {ev.get('split', '')} "
                     f"instances ({ratio}the flat reference's {_mm(flat)}); {ev.get('parts_used', '?')} parts used, regions "
                     f"{'distinct' if ev.get('regions_distinct') else 'NOT distinct'}")
        if ev.get("network_alone"):
            lines.append(f"             the network's prediction alone, before test-time refinement: MPJPE "
                         f"{_mm(ev['network_alone'].get('mpjpe_mm'))}")
    else:
        lines.append(f"  evaluate   {ev.get('instances', '?')} instances without ground truth: re-projection "
                     f"error {ev.get('reproj2d_mean_px', float('nan')):.1f} px (mean)")
        if ev.get("network_alone"):
            lines.append(f"             the network's prediction alone, before test-time refinement: "
                         f"{ev['network_alone'].get('reproj2d_mean_px', float('nan')):.1f} px")
    report = Path(reports) / "index.html"
    if report.is_file():
        lines.append(f"  report     {report} (open it in a browser)")
    lines.append("  compare    dvc metrics diff  |  dvc plots diff  |  dvc exp run -S model.parts=5")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", default="metrics", help="folder of the stages' metrics JSON files")
    ap.add_argument("--reports", default="reports", help="folder of the evaluate stage's report")
    args = ap.parse_args(argv)
    print("\n".join(summary_lines(args.metrics, args.reports)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
