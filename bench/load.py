"""Load test: N concurrent gradio_client users against a local sd35ui server, mixing generations, stops, bad input
and contact sheets; reports latency (p50/p95), jobs completed, errors by kind, and checks that every completed job's
file is on disk with its settings.

By default it starts `demo.py` in a separate process on the built-in tiny model with a fresh outputs folder (CPU is
fine). `--url` drives a server that is already running instead (loopback addresses only; pass its `--outputs` folder
so the files can be checked). Client count and run time are bounded.

    HF_HUB_OFFLINE=1 python bench/load.py --clients 8 --seconds 60 --json bench-load.json
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MAX_CLIENTS = 64  # more threads than this measure the client machine, not the server
MAX_SECONDS = 600
JOB_TIMEOUT_S = 300  # a job that takes longer than this (queue wait included) counts as a timeout
GENERIC = "has raised an exception but has not enabled verbose error reporting"  # Gradio's words for a crash
BAD_INPUTS = [  # (what is wrong, overrides): each must be refused with a clear message
    ("empty prompt", {"prompt": ""}),
    ("huge prompt", {"prompt": "x" * 100_000}),
    ("control characters", {"prompt": "\x00\x1b[31m"}),
    ("negative steps", {"steps": -5}),
    ("huge size", {"width": 10**9}),
    ("size not a multiple of 16", {"height": 40}),
    ("guidance as text", {"guidance": "lots"}),
    ("seed out of range", {"seed": 2**40}),
]


@dataclass
class Job:
    client: int
    kind: str  # generate, stop, bad, sheet
    outcome: str  # ok, stopped, refused, queue_full, timeout, unexpected
    seconds: float
    detail: str = ""
    files: list[str] = field(default_factory=list)  # names of the files the server says it saved
    seed: int | None = None


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class User(threading.Thread):
    """One simulated user: a gradio_client session that runs jobs back to back until the deadline."""

    def __init__(self, number: int, url: str, deadline: float, mix: dict[str, int], args: argparse.Namespace):
        super().__init__(name=f"user-{number}", daemon=True)
        self.number, self.url, self.deadline, self.args = number, url, deadline, args
        self.random = random.Random(args.seed * 1000 + number)
        self.kinds, self.weights = list(mix), list(mix.values())
        self.jobs: list[Job] = []
        self.stops_outside_queue = 0

    def run(self) -> None:
        from gradio_client import Client

        self.client = Client(self.url, verbose=False, download_files=False, auth=self.args.auth_pair)
        while time.time() < self.deadline:
            kind = self.random.choices(self.kinds, self.weights)[0]
            start = time.perf_counter()
            try:
                job = getattr(self, f"do_{kind}")()
            except Exception as exc:  # anything unforeseen is a result of the test, not a crash of it
                job = self.classify(kind, exc)
            job.seconds = time.perf_counter() - start
            self.jobs.append(job)
            if job.outcome == "queue_full":  # "try again", as a person would: after a moment, not at once
                time.sleep(self.random.uniform(0.5, 1.5) * self.args.retry_after)

    def generate_args(self, **overrides: Any) -> dict[str, Any]:
        values = dict(
            prompt=self.random.choice(["a red circle", "a blue square", "a green triangle on a white background"]),
            negative_prompt="",
            steps=self.args.steps,
            guidance=4.5,
            width=self.args.size,
            height=self.args.size,
            seed=self.random.randrange(2**31),
            randomize_seed=False,
        )
        values.update(overrides)
        return values

    def classify(self, kind: str, exc: BaseException) -> Job:
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError

        message = str(exc)
        if isinstance(exc, QueueError):
            return Job(self.number, kind, "queue_full", 0, message)
        if isinstance(exc, TimeoutError):
            return Job(self.number, kind, "timeout", 0, message)
        if isinstance(exc, AppError) and "Stopped" in message:
            return Job(self.number, kind, "stopped", 0, message)
        if isinstance(exc, AppError) and GENERIC not in message and "Traceback" not in message:
            return Job(self.number, kind, "refused", 0, message)
        return Job(self.number, kind, "unexpected", 0, f"{type(exc).__name__}: {message}")

    def do_generate(self) -> Job:
        values = self.generate_args()
        image, seed, _ = self.client.submit(**values, api_name="/generate").result(timeout=JOB_TIMEOUT_S)
        return Job(self.number, "generate", "ok", 0, files=[image["orig_name"]], seed=seed)

    def do_stop(self) -> Job:
        """Start a long job, let it run a moment, press Stop: it must end as stopped (or done, if it was quicker)."""
        job = self.client.submit(**self.generate_args(steps=50), api_name="/generate")
        waited = time.time() + JOB_TIMEOUT_S
        while job.status().code.name not in ("PROGRESS", "FINISHED") and time.time() < waited:
            time.sleep(0.05)
        time.sleep(self.random.uniform(0, 0.5))
        self.stop()
        image, seed, _ = job.result(timeout=JOB_TIMEOUT_S)  # raises "Stopped" when the stop took
        return Job(self.number, "stop", "ok", 0, "finished before the stop", files=[image["orig_name"]], seed=seed)

    def stop(self) -> None:
        """Press Stop. gradio_client sends every call through the queue, so when the queue is full it cannot reach
        /stop; the page's Stop button calls it outside the queue (queue=False), and so does this then."""
        import httpx
        from gradio_client.utils import QueueError

        try:
            self.client.predict(api_name="/stop")
        except QueueError:
            self.stops_outside_queue += 1
            httpx.post(
                f"{self.url}/gradio_api/run/stop",
                json={"data": [], "session_hash": self.client.session_hash},
                cookies=self.client.cookies,
                timeout=30,
            ).raise_for_status()

    def do_bad(self) -> Job:
        what, overrides = self.random.choice(BAD_INPUTS)
        try:
            self.client.submit(**self.generate_args(**overrides), api_name="/generate").result(timeout=JOB_TIMEOUT_S)
        except Exception as exc:
            job = self.classify("bad", exc)
            job.detail = f"{what}: {job.detail[:120]}"
            return job
        return Job(self.number, "bad", "unexpected", 0, f"{what}: accepted")

    def do_sheet(self) -> Job:
        values = self.generate_args()
        outputs = self.client.submit(
            values["prompt"],
            "",
            "Guidance",
            "3, 6",
            "Steps",
            "1, 2",
            values["steps"],
            4.5,
            self.args.size,
            self.args.size,
            values["seed"],
            True,
            0,
            True,
            False,
            api_name="/contact_sheet",
        ).result(timeout=JOB_TIMEOUT_S)
        sheet = outputs[0]
        cells = [item["image"]["orig_name"] for item in outputs[1] or []]
        return Job(self.number, "sheet", "ok", 0, files=[sheet["orig_name"], *cells], seed=values["seed"])


def verify_files(jobs: list[Job], outputs: Path) -> dict[str, Any]:
    """Every file a completed job reported is in the outputs folder, a whole PNG with readable settings."""
    from PIL import Image

    from sd35ui.core import metadata

    on_disk = {p.name: p for p in outputs.rglob("*.png") if not p.name.startswith(".")}
    checked, missing, unreadable = 0, [], []
    for job in jobs:
        for name in job.files:
            path = on_disk.get(name)
            if path is None:
                missing.append(name)
                continue
            try:
                with Image.open(path) as image:
                    image.load()
                    settings = metadata.read_png_metadata(image)["settings"]
                if job.kind != "sheet" and settings.seed != job.seed:
                    raise ValueError(f"seed {settings.seed} != {job.seed}")
                checked += 1
            except Exception as exc:
                unreadable.append(f"{name}: {exc}")
    partial = [p.name for p in outputs.rglob(".tmp-*")]
    return {"checked": checked, "missing": missing, "unreadable": unreadable, "partial_files": partial}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str, Path]:
    """`demo.py` in its own process (clients in this process would compete with it for one interpreter lock and
    slow it down), on a free loopback port, with a fresh outputs folder unless --outputs names one."""
    outputs = args.outputs or Path(tempfile.mkdtemp(prefix="sd35ui-load-"))
    port = free_port()
    command = [sys.executable, str(ROOT / "demo.py"), "--model", args.model, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--outputs", str(outputs), "--queue-size", str(args.queue_size)]
    command += ["--concurrency", str(args.concurrency)]
    env = {**os.environ, "SD35UI_AUTH": args.auth or ""}
    log = open(outputs.parent / f"{outputs.name}-server.log", "w")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}; see {log.name}")
        try:
            with socket_connection(port):
                return server, url, outputs
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"the server did not start within 180 s; see {log.name}")


def socket_connection(port: int) -> Any:
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=1)


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in ("generate", "stop", "bad", "sheet"):
            raise SystemExit(f"--mix: unknown job kind {kind!r}; use generate, stop, bad and sheet")
        mix[kind.strip()] = int(weight or 1)
    return mix


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help=f"concurrent users, 1-{MAX_CLIENTS} (default 8)")
    parser.add_argument("--seconds", type=float, default=60, help=f"how long to send new jobs, at most {MAX_SECONDS}")
    parser.add_argument("--mix", default="generate=6,stop=1,bad=2,sheet=1", help="job kinds and their weights")
    parser.add_argument("--url", help="a running server on this machine (default: start one on the tiny model)")
    parser.add_argument("--outputs", type=Path, help="the server's outputs folder (required with --url)")
    parser.add_argument("--auth", help="user:password when the server requires a login")
    parser.add_argument("--model", default="tiny-random", help="model for the server this starts")
    parser.add_argument("--queue-size", type=int, default=16, help="server this starts: jobs that may wait")
    parser.add_argument("--concurrency", type=int, default=1, help="server this starts: GPU jobs at once")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seeds the job mix, so runs can be repeated")
    parser.add_argument("--retry-after", type=float, default=2.0, help="seconds a user waits after 'queue full'")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be 1 to {MAX_CLIENTS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be more than 0 and at most {MAX_SECONDS}")
    if args.url and not is_loopback(args.url):
        parser.error("--url must be a loopback address (127.0.0.1, ::1 or localhost): this tool loads a server hard")
    if args.url and not args.outputs:
        parser.error("--url needs --outputs, the server's outputs folder, to check the files it saved")
    from sd35ui.app.access import parse_auth

    args.auth_pair = parse_auth(args.auth)
    mix = parse_mix(args.mix)

    server = None
    if args.url:
        url, outputs = args.url, args.outputs
    else:
        server, url, outputs = start_server(args)
    started = time.time()
    users = [User(i, url, started + args.seconds, mix, args) for i in range(args.clients)]
    for user in users:
        user.start()
    for user in users:
        user.join(args.seconds + JOB_TIMEOUT_S + 60)
    elapsed = time.time() - started
    stuck = [user.name for user in users if user.is_alive()]
    jobs = [job for user in users for job in user.jobs]

    from gradio_client import Client

    probe = time.perf_counter()  # the server still answers after the load
    try:
        Client(url, verbose=False, download_files=False, auth=args.auth_pair).predict(
            "a red circle", "", 1, 2, args.size, args.size, 1, False, api_name="/generate"
        )
        probe_s: float | None = round(time.perf_counter() - probe, 2)
    except Exception:
        probe_s = None
    if server is not None:
        server.terminate()
        server.wait(30)

    by_kind: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_kind[job.kind].append(job)
    latency = {}
    for kind, kind_jobs in sorted(by_kind.items()):
        times = [j.seconds for j in kind_jobs if j.outcome in ("ok", "stopped", "refused")]
        latency[kind] = {
            "jobs": len(kind_jobs),
            "p50_s": percentile(times, 50),
            "p95_s": percentile(times, 95),
            "outcomes": dict(Counter(j.outcome for j in kind_jobs)),
        }
    completed = [j for j in jobs if j.outcome == "ok" and j.files]
    report = {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "mix": mix,
        "server": url
        if args.url
        else f"demo.py --model {args.model} --queue-size {args.queue_size} --concurrency {args.concurrency}",
        "jobs": len(jobs),
        "completed_with_files": len(completed),
        "outcomes": dict(Counter(j.outcome for j in jobs)),
        "latency": latency,
        "unexpected": [f"{j.kind}: {j.detail}" for j in jobs if j.outcome == "unexpected"][:20],
        "files": verify_files(completed, outputs),
        "still_running_users": stuck,
        "stops_sent_outside_the_queue": sum(user.stops_outside_queue for user in users),
        "server_answers_after_load_s": probe_s,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        f"{report['clients']} clients for {report['seconds']} s against {report['server']}",
        f"{report['jobs']} jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(report["outcomes"].items())),
        f"{'kind':<10}{'jobs':>6}{'p50 s':>9}{'p95 s':>9}  outcomes",
    ]
    for kind, row in report["latency"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items()))
        lines.append(f"{kind:<10}{row['jobs']:>6}{s(row['p50_s']):>9}{s(row['p95_s']):>9}  {outcomes}")
    files = report["files"]
    lines.append(
        f"files: {files['checked']} checked on disk with settings, {len(files['missing'])} missing, "
        f"{len(files['unreadable'])} unreadable, {len(files['partial_files'])} partial (.tmp-) left"
    )
    for problem in report["unexpected"]:
        lines.append(f"unexpected: {problem}")
    probe = report["server_answers_after_load_s"]
    lines.append(
        "server did NOT answer after the load" if probe is None else f"server answered after the load in {probe} s"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    result = main()
    bad = result["outcomes"].get("unexpected", 0) or result["files"]["missing"] or result["files"]["unreadable"]
    sys.exit(1 if bad or result["still_running_users"] else 0)
