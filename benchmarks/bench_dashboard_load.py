"""Dashboard under load: slider moves from C concurrent loopback clients, against
``labkit dashboard --workers N`` (gunicorn) and Dash's development server.

    python benchmarks/bench_dashboard_load.py [--workers 2] [--clients 1,4,16] [--moves 200]
        [--trained RUN] [--repeats 3] [--no-dev-server]

Writes a synthetic 2,000-record lenet run (``bench_dashboard.write_synthetic_run``) and
copies ``--trained`` beside it, serves the folder with ``labkit dashboard`` in a
subprocess on a free loopback port, and drives it from another process: C clients, each
a closed loop of slider moves. A move is what a browser sends when the step slider's
value changes: one POST to ``/_dash-update-component`` for every server-side callback with
the slider's value among its inputs, sent at once (at most 6 connections a client, as a
browser keeps to one host, each kept alive), and its latency is the time until the last
of them has answered. The requests are built from ``GET /_dash-dependencies`` and the
page's own values (``/_dash-layout``, then the callbacks a page load fires), so the
benchmark follows the callbacks when they change; client-side callbacks are not sent.

Each level sends ``--moves`` moves in all, shared among its clients, after a warm-up
that lets every worker open the run. Prints one Markdown row per server, run and level:
requests, errors (a status other than 200/204, or no answer, with what they were),
requests resent (the server had closed an idle kept-alive connection as the request went
out: a browser sends it again, and so does this), median and p95 move latency, and moves
per second; with ``--repeats R``, the median of the R repeats and their range.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

UPDATE = "/_dash-update-component"
SLIDER = "record.value"  # the step slider: the moves change it
RUN_PICKER = "run.value"  # which run the page shows
BROWSER_CONNECTIONS = 6  # what a browser opens to one host at most
READY_SECONDS = 120
OK = (200, 204)  # 204: every output of the callback left as it was (PreventUpdate)


# --- requests as the renderer forms them -----------------------------------------------


def parse_id(text: str):
    """A component id as the dependencies list spells it: a name, or a pattern id's JSON."""
    return json.loads(text) if text.startswith("{") else text


def prop_key(component, prop: str) -> str:
    """``"id.prop"``, as values and ``changedPropIds`` are keyed (sorted JSON for dict ids)."""
    name = json.dumps(component, sort_keys=True) if isinstance(component, dict) else component
    return f"{name}.{prop}"


def split_outputs(output: str) -> list[dict]:
    """``"..a.b...c.d@h.."`` -> ``[{"id": "a", "property": "b"}, {"id": "c",
    "property": "d@h"}]`` (the renderer keeps a duplicate output's ``@hash``)."""
    texts = output[2:-2].split("...") if output.startswith("..") else [output]
    outputs = []
    for text in texts:
        component, prop = text.rsplit(".", 1)
        outputs.append({"id": parse_id(component), "property": prop})
    return outputs


def is_wildcard(dependency: dict) -> bool:
    """Whether a dependency is a pattern (ALL, MATCH, ALLSMALLER), which needs the page's
    components to expand: the benchmark does not send those."""
    component = parse_id(dependency["id"])
    return isinstance(component, dict) and any(isinstance(v, list) for v in component.values())


def request_body(callback: dict, values: dict, changed: list[str]) -> dict:
    """The body the renderer posts for ``callback`` with the page's ``values`` (an input
    the page has no value for is sent without one, as the renderer does)."""

    def filled(dependencies):
        items = []
        for dependency in dependencies:
            component = parse_id(dependency["id"])
            item = {"id": component, "property": dependency["property"]}
            key = prop_key(component, dependency["property"])
            if key in values:
                item["value"] = values[key]
            items.append(item)
        return items

    outputs = split_outputs(callback["output"])
    body = {
        "output": callback["output"],
        "outputs": outputs if callback["output"].startswith("..") else outputs[0],
        "inputs": filled(callback["inputs"]),
        "changedPropIds": changed,
    }
    if callback.get("state"):
        body["state"] = filled(callback["state"])
    return body


# --- the page's values -----------------------------------------------------------------


def get_json(connection: http.client.HTTPConnection, path: str):
    connection.request("GET", path)
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status}")
    return json.loads(data)


def post(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", UPDATE, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def layout_values(tree, values: dict, run: str) -> None:
    """Every component prop in the layout JSON, by ``"id.prop"``; a ``dcc.Location`` gets
    the address of a page opened on ``run``."""
    if isinstance(tree, list):
        for item in tree:
            layout_values(item, values, run)
        return
    if not isinstance(tree, dict):
        return
    props = tree.get("props") if "type" in tree else None
    if not isinstance(props, dict):
        for item in tree.values():
            layout_values(item, values, run)
        return
    component = props.get("id")
    if component is not None:
        for prop, value in props.items():
            if prop not in ("id", "children"):
                values[prop_key(component, prop)] = value
        if tree["type"] == "Location":
            for prop, value in (("pathname", "/"), ("search", f"?run={run}"), ("hash", "")):
                values.setdefault(prop_key(component, prop), value)
    layout_values(props.get("children"), values, run)


def merge_response(values: dict, data: bytes) -> None:
    """Take a callback's answer into the page's values (a partial update, Patch, is not a
    value: skipped)."""
    answer = json.loads(data).get("response", {})
    for component, props in answer.items():
        for prop, value in props.items():
            if not (isinstance(value, dict) and "__dash_patch_update" in value):
                values[f"{component}.{prop}"] = value


def page(port: int, run: str) -> tuple[list[dict], dict]:
    """``(the slider's callbacks, the page's values)`` for a page showing ``run``: the
    layout's values, then twice every callback a page load fires (not client-side, not
    ``prevent_initial_call``) with their answers merged, as the renderer settles a page."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    dependencies = get_json(connection, "/_dash-dependencies")
    values: dict = {}
    layout_values(get_json(connection, "/_dash-layout"), values, run)
    values[RUN_PICKER] = run
    server_side = [
        callback
        for callback in dependencies
        if not callback.get("clientside_function")
        and not any(is_wildcard(d) for d in callback["inputs"] + callback.get("state", []))
    ]
    on_load = [callback for callback in server_side if not callback.get("prevent_initial_call")]
    on_run = [callback for callback in server_side if takes(callback, RUN_PICKER)]
    for _ in range(2):
        for callback in on_load:
            body = request_body(callback, values, [])
            status, data = post(connection, json.dumps(body).encode())
            if status == 200:
                merge_response(values, data)
        values[RUN_PICKER] = run
        for callback in on_run:  # what the renderer fires once the run is chosen
            body = request_body(callback, values, [RUN_PICKER])
            status, data = post(connection, json.dumps(body).encode())
            if status == 200:
                merge_response(values, data)
        values[RUN_PICKER] = run
    moves = [callback for callback in server_side if takes(callback, SLIDER)]
    if not moves:
        raise RuntimeError(f"no server-side callback takes {SLIDER} as an input")
    for callback in moves:  # a settled page answers a move; 204 would be nothing to time
        body = request_body(callback, values, [SLIDER])
        status, _ = post(connection, json.dumps(body).encode())
        if status != 200:
            raise RuntimeError(f"{callback['output']}: a move answers HTTP {status}")
    connection.close()
    return moves, values


def takes(callback: dict, prop: str) -> bool:
    """Whether ``prop`` (``"id.property"``) is among the callback's inputs."""
    return any(prop_key(parse_id(d["id"]), d["property"]) == prop for d in callback["inputs"])


def record_count(values: dict) -> int:
    """How many records the slider offers (its ``max`` + 1)."""
    slider = SLIDER.rsplit(".", 1)[0]
    return int(values.get(f"{slider}.max") or 0) + 1


# --- the clients -----------------------------------------------------------------------


class Client:
    """One browser tab: up to :data:`BROWSER_CONNECTIONS` kept-alive connections, each
    move's requests sent at once. As a browser does, a request whose reused connection
    the server had closed (nothing answered) is sent again on a new one, and counted."""

    def __init__(self, port: int, callbacks: list[dict], values: dict) -> None:
        self.port = port
        self.callbacks = callbacks
        self.values = dict(values)
        self.pool = ThreadPoolExecutor(min(len(callbacks), BROWSER_CONNECTIONS))
        self.local = threading.local()
        self.resent = 0
        self.failures: list[str] = []  # what each failed request met

    def send(self, body: bytes) -> bool:
        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            reused = connection is not None
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=120
                )
            try:
                status, _ = post(connection, body)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self.local.connection = None
                if reused and attempt == 1 and isinstance(exc, ConnectionError):
                    self.resent += 1  # closed while idle: the browser's retry
                    continue
                self.failures.append(type(exc).__name__)
                return False
            if status not in OK:
                self.failures.append(f"HTTP {status}")
            return status in OK
        return False

    def move(self, record: int) -> tuple[float, int]:
        """``(seconds until every callback answered, failed requests)`` for one move."""
        self.values[SLIDER] = record
        bodies = [
            json.dumps(request_body(callback, self.values, [SLIDER])).encode()
            for callback in self.callbacks
        ]
        start = time.perf_counter()
        answers = list(self.pool.map(self.send, bodies))
        return time.perf_counter() - start, answers.count(False)


def drive(port: int, run: str, clients: int, moves: int, warmup: int, seed: int) -> dict:
    """One level: ``clients`` concurrent clients sharing ``moves`` slider moves to random
    records of ``run``, after ``warmup`` untimed ones. Runs in the client process."""
    callbacks, values = page(port, run)
    records = record_count(values)
    rng = random.Random(seed)
    tabs = [Client(port, callbacks, values) for _ in range(max(clients, warmup))]
    warm = [rng.randrange(records) for _ in tabs]
    with ThreadPoolExecutor(len(tabs)) as warming:  # every worker opens the run
        list(warming.map(lambda tab, record: tab.move(record), tabs, warm))
    for tab in tabs:
        tab.resent, tab.failures = 0, []
    shares = [moves // clients + (i < moves % clients) for i in range(clients)]
    plans = [[rng.randrange(records) for _ in range(share)] for share in shares]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as running:
        results = list(
            running.map(lambda tab, plan: [tab.move(r) for r in plan], tabs[:clients], plans)
        )
    wall = time.perf_counter() - start
    for tab in tabs:
        tab.pool.shutdown()
    timed = tabs[:clients]
    latencies = sorted(latency for result in results for latency, _ in result)
    return {
        "callbacks": len(callbacks),
        "requests": len(latencies) * len(callbacks),
        "errors": sum(failed for result in results for _, failed in result),
        "resent": sum(tab.resent for tab in timed),
        "failures": sorted({kind for tab in timed for kind in tab.failures}),
        "median_ms": statistics.median(latencies) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
        "moves_per_s": len(latencies) / wall,
    }


def percentile(values: list[float], percent: int) -> float:
    """The ``percent``-th percentile (linear between the two nearest, as numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


# --- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(runs: Path, workers: int, log: Path) -> tuple[subprocess.Popen, int]:
    """``labkit dashboard RUNS --workers N`` on a free port, once it answers."""
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-m", "labkit.cli", "dashboard", str(runs), "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)], stdout=out, stderr=out, env=env
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server ended ({process.returncode}): {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not answer in {READY_SECONDS} s")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the report ------------------------------------------------------------------------


def cell(values: list[float], digits: int = 0) -> str:
    """The median of the repeats, and their range when there are several."""
    middle = f"{statistics.median(values):,.{digits}f}"
    if len(values) == 1:
        return middle
    return f"{middle} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def row(server: str, run: str, clients: int, repeats: list[dict]) -> str:
    requests = sum(r["requests"] for r in repeats)
    errors = sum(r["errors"] for r in repeats)
    kinds = sorted({kind for r in repeats for kind in r["failures"]})
    errors_cell = f"{errors} ({', '.join(kinds)})" if kinds else str(errors)
    resent = sum(r["resent"] for r in repeats)
    return (
        f"| {server} | {run} | {clients} | {repeats[0]['callbacks']} | {requests:,} | "
        f"{errors_cell} | {resent} | "
        f"{cell([r['median_ms'] for r in repeats])} | {cell([r['p95_ms'] for r in repeats])} | "
        f"{cell([r['moves_per_s'] for r in repeats], 1)} |"
    )


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=cores(), help="gunicorn processes")
    parser.add_argument("--clients", default="1,4,16", help="the levels, comma-separated")
    parser.add_argument("--moves", type=int, default=200, help="moves per level, in all")
    parser.add_argument("--records", type=int, default=2000, help="the synthetic run's")
    parser.add_argument("--trained", type=Path, help="a recorded run to measure too")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-dev-server", action="store_true", help="gunicorn only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.trained and not (args.trained / "manifest.json").is_file():
        parser.error(f"--trained {args.trained}: not a recorded run (no manifest.json)")
    levels = [int(level) for level in args.clients.split(",")]

    from bench_dashboard import write_synthetic_run

    root = Path(tempfile.mkdtemp(prefix="labkit-load-"))
    runs_dir = root / "runs"
    runs_dir.mkdir()
    servers = [] if args.no_dev_server else [("Dash dev server", 0)]
    servers.append((f"gunicorn, {args.workers} workers", args.workers))
    rows = []
    try:
        start = time.perf_counter()
        write_synthetic_run(runs_dir / "synthetic", args.records)
        print(f"wrote a {args.records}-record run in {time.perf_counter() - start:.0f} s")
        runs = [f"synthetic ({args.records:,} records)"]
        names = {runs[0]: "synthetic"}
        if args.trained:
            shutil.copytree(args.trained, runs_dir / "trained")
            runs.append(f"trained ({args.trained.name})")
            names[runs[1]] = "trained"
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as client:
            for server, workers in servers:
                process, port = start_server(runs_dir, workers, root / f"server-{workers}.log")
                try:
                    for run in runs:
                        for clients in levels:
                            repeats = []
                            for repeat in range(args.repeats):
                                seed = args.seed + 1000 * repeat + clients
                                work = (port, names[run], clients, args.moves, 2 * workers, seed)
                                repeats.append(client.submit(drive, *work).result())
                            rows.append(row(server, run, clients, repeats))
                            print(rows[-1], flush=True)
                finally:
                    stop_server(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(
        "| server | run | clients | callbacks a move | requests | errors | resent |"
        " median ms | p95 ms | moves/s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
