"""A hostile run against a live app on the tiny model: every forged sheet PNG of the test corpus
(tests/png_support.py, FORGED_SHEETS) dropped on Compare > "Load a sheet PNG" through the upload route and the queue,
as a browser sends it, `--rounds` times each, while a second client asks for /history. Prints the requests, how many
were refused with a titled message, the time to refuse (median and max), how many /history answers came meanwhile,
and the server's resident memory before and after.

    python bench/hostile_sheets.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def rss_mb() -> float:
    """This process's resident memory now (the app runs in it), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from gradio_client import Client
    from load_sheet_support import drop, load_index
    from png_support import FORGED_SHEETS, forged_sheet, sheet_description

    from sd35ui.app.ui import AppConfig, create_app, launch
    from sd35ui.core.pipeline import LoadOptions

    work = Path(tempfile.mkdtemp(prefix="sd35ui-hostile-"))
    config = AppConfig(load=LoadOptions(model="tiny-random"), outputs=work / "outputs")
    app = create_app(config)
    launch(app, config, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
    url, index = app.local_url.rstrip("/"), load_index(app)
    client = Client(app.local_url, verbose=False)
    client.predict(0, False, api_name="/history")
    before = rss_mb()
    files = {
        name: forged_sheet(work / f"forged-{i}.png", {**sheet_description(), **changes}, size=(1, 1))
        for i, (name, (changes, _)) in enumerate(FORGED_SHEETS.items())
    }
    served: list[float] = []
    done = threading.Event()

    def browse() -> None:
        while not done.is_set():
            started = time.perf_counter()
            client.predict(0, False, api_name="/history")
            served.append(time.perf_counter() - started)

    browsing = threading.Thread(target=browse, daemon=True)
    browsing.start()
    times, refused, titled = [], 0, 0
    for round_ in range(args.rounds):
        for name, path in files.items():
            started = time.perf_counter()
            answer = drop(url, index, path, session=f"hostile-{round_}")
            times.append(time.perf_counter() - started)
            refused += answer["success"] is False
            titled += answer.get("output", {}).get("title") == "Not a sheet"
    done.set()
    browsing.join(timeout=30)
    after = rss_mb()
    app.close()
    report = {
        "forged_sheets": len(files),
        "requests": len(times),
        "refused": refused,
        "titled_not_a_sheet": titled,
        "refuse_s_median": round(statistics.median(times), 4),
        "refuse_s_max": round(max(times), 4),
        "history_answers_meanwhile": len(served),
        "history_s_max": round(max(served), 4) if served else None,
        "rss_mb_before": round(before, 1),
        "rss_mb_after": round(after, 1),
    }
    print(json.dumps(report, indent=2))
    return 0 if refused == len(times) else 1


if __name__ == "__main__":
    raise SystemExit(main())
