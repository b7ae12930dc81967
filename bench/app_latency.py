"""How long a visitor of ``saliscope app`` waits, with the app's default settings: the photo read and its top-5,
each method's map, each method's verdicts, the downloads written, and the notebook's rich display of one
explanation. The explorer's engine is timed directly (no browser, no Gradio): what the page adds is the
transfer of the cards, small next to these.

    PYTHONPATH=src python bench/app_latency.py                 # chelsea, the three default methods, 3 rounds
    PYTHONPATH=src python bench/app_latency.py --checks map,deletion --rounds 5

Each round starts from a fresh session (nothing cached) on a warmed-up explorer; medians over the rounds.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

from PIL import Image

import saliscope as ss
from saliscope.app import AppSettings, Explorer
from saliscope.trust import CHECKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default="chelsea", help="a sample photo's name")
    parser.add_argument("--methods", default="gradient,gradcam,integrated-gradients")
    parser.add_argument("--checks", default=",".join(CHECKS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    methods = tuple(args.methods.split(","))
    checks = tuple(c for c in args.checks.split(",") if c)
    explorer = Explorer(ss.load_model(), AppSettings(methods=methods, checks=checks))
    buffer = io.BytesIO()
    ss.sample_images()[args.photo].save(buffer, format="PNG")
    upload = buffer.getvalue()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.photo}; methods {', '.join(methods)}; checks {checks}")

    timings: dict[str, list[float]] = {}

    def clock(name: str, start: float) -> float:
        now = time.perf_counter()
        timings.setdefault(name, []).append(now - start)
        return now

    for round_ in range(args.rounds + 1):  # round 0 warms up (chunk sizes measured, explainers built)
        start = time.perf_counter()
        session = explorer.open(upload, None)
        cls = session.classes[0]
        t = clock("photo read + top-5", start)
        for name in methods:
            explorer.explain(session, cls, [name], None)
            t = clock(f"map: {name}", t)
        explorer.write_downloads(session, cls, list(methods), None, 0.8)
        t = clock("downloads written", t)
        clock("→ every map shown", start)
        for name in methods:
            explorer.judge(session, cls, [name], None)
            t = clock(f"verdicts: {name}", t)
        clock("→ every verdict shown", start)
        e = explorer.explanation(session, methods[0], cls, None)
        t = time.perf_counter()
        Image.open(io.BytesIO(e._repr_mimebundle_()["image/png"]))
        clock("notebook: rich display of one map", t)
        label = "warm-up" if round_ == 0 else f"round {round_}"
        maps, verdicts = timings["→ every map shown"][-1], timings["→ every verdict shown"][-1]
        print(f"{label}: every map {maps:.1f} s, every verdict {verdicts:.1f} s", flush=True)
        if round_ == 0:
            timings.clear()

    width = max(len(k) for k in timings)
    for name, values in timings.items():
        print(f"{name:<{width}}  {statistics.median(values):7.2f} s   (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
