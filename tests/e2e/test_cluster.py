"""A study on a Ray cluster: `ablate submit / status / logs / stop`, token authentication, shared
storage, pending trials, and the configs in cluster/. The `slow` test starts a real two-node Ray
cluster on loopback (token authentication on), an MLflow server and submits the quickstart."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pyarrow.parquet as pq
import pytest
import ray.autoscaler
import yaml

from ablate import results
from ablate.cli import main
from ablate.cluster import access
from ablate.cluster import nodes as cluster_nodes
from ablate.cluster.submit import runtime_env
from ablate.search import tuning

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
AUTOSCALER = Path(ray.autoscaler.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- token, address, runtime_env -----------------------------------------------------------------
@pytest.fixture
def no_token(tmp_path, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_token_is_read_where_ray_reads_it(no_token, monkeypatch, tmp_path):
    assert access.read_token() == (None, "")
    (no_token / ".ray").mkdir(parents=True)
    (no_token / ".ray/auth_token").write_text("from-home\n")
    assert access.read_token() == ("from-home", str(no_token / ".ray/auth_token"))
    (tmp_path / "tok").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert access.read_token()[0] == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert access.read_token() == ("from-env", "$RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(access.ClusterAuthError, match="RAY_AUTH_TOKEN_PATH"):
        access.read_token()


def test_our_token_lookup_agrees_with_rays_own_loader(no_token, tmp_path):
    """Ray's C++ loader (what `ray job submit` uses) finds the same token in the same order."""
    (tmp_path / "tok").write_text("path-token")
    (no_token / ".ray").mkdir(parents=True)
    (no_token / ".ray/auth_token").write_text("home-token")
    code = (
        "from ray._raylet import AuthenticationTokenLoader as L\n"
        "print(L.instance().get_raw_token(ignore_auth_mode=True))"
    )
    for extra in ({}, {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "tok")}, {"RAY_AUTH_TOKEN": "env"}):
        env = {**os.environ, **extra}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in extra.items():
                patch.setenv(key, value)
            assert out.stdout.strip() == access.read_token()[0], extra


def test_addresses(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert access.resolve_address(None) == "http://127.0.0.1:8265"
    assert access.resolve_address("head:8265/") == "http://head:8265"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address: not for the Jobs API
    assert access.resolve_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    assert access.resolve_address(None) == "http://10.0.0.1:8265"
    assert access.is_loopback("http://127.0.0.1:8265") and access.is_loopback("localhost:1")
    assert not access.is_loopback("http://10.0.0.1:8265")


def test_runtime_env_ships_the_code_and_leaves_results_behind(tmp_path):
    env = runtime_env(tmp_path, pip=None)
    assert env["working_dir"] == str(tmp_path)
    assert {"results/", "mlflow.db", "*.parquet", ".venv/"} <= set(env["excludes"])
    assert {Path(p).name for p in env["py_modules"]} == {"ablate", "trainers"}  # outside root
    assert "pip" not in env
    assert env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"
    inside = runtime_env(REPO, pip="project")
    assert "py_modules" not in inside  # the working directory holds the code already
    assert any(r.startswith("torch") for r in inside["pip"])
    assert not any("pytest" in r for r in inside["pip"])  # extras stay out


# ---- refusals before anything is submitted ------------------------------------------------
QUICKSTART = "search_spaces/quickstart.yaml"


def submit(*args: str) -> list[str]:
    return ["submit", QUICKSTART, *args]


@pytest.fixture
def in_repo(monkeypatch, no_token):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_submit_refuses_what_a_remote_cluster_cannot_use(in_repo, capsys, tmp_path):
    remote = ["--address", "http://10.255.255.1:8265"]
    assert main(submit(*remote)) == 2
    assert "needs an MLflow tracking server" in capsys.readouterr().err
    assert main(submit(*remote, "--tracking-uri", f"sqlite:///{tmp_path}/m.db")) == 2
    assert "file-based MLflow store" in capsys.readouterr().err
    down = f"http://127.0.0.1:{free_port()}"
    assert main(submit(*remote, "--tracking-uri", down)) == 2
    assert "does not answer" in capsys.readouterr().err


def test_submit_refuses_bad_storage_and_files_outside_the_working_dir(in_repo, capsys, tmp_path):
    local = ["--address", f"http://127.0.0.1:{free_port()}"]
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main(submit(*local, "--tracking-uri", uri, "--storage", "nosuch://bucket/x")) == 2
    assert "nosuch://bucket/x" in capsys.readouterr().err
    blocked = f"file://{tmp_path}/a-file/x"
    (tmp_path / "a-file").write_text("")
    assert main(submit(*local, "--tracking-uri", uri, "--storage", blocked)) == 2
    assert f"--storage {blocked}: cannot write" in capsys.readouterr().err
    assert main([*submit(*local), "--working-dir", str(tmp_path)]) == 2
    assert "outside the working directory" in capsys.readouterr().err
    assert main(submit(*local, "--tracking-uri", uri, "--storage", str(tmp_path))) == 1
    assert f"cannot reach the Ray dashboard (Jobs API) at {local[1]}" in capsys.readouterr().err


def test_an_invalid_file_is_refused_before_submission(in_repo, capsys):
    assert main(submit("train.epochs=oops", "--address", "http://10.255.255.1:8265")) == 2
    assert "train.epochs" in capsys.readouterr().err


def test_a_dashboard_address_for_search_points_to_submit():
    from ablate.errors import ConfigError

    with pytest.raises(ConfigError, match="ablate submit FILE --address http://h:8265"):
        tuning.connect("http://h:8265")


class _FakeDashboard(http.server.BaseHTTPRequestHandler):
    """/api/version answers; everything else wants the token 'right'."""

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._send(200, b'{"version": "4", "ray_version": "2.60.0", "ray_commit": "x"}')
        elif self.headers.get("Authorization") == "Bearer right":
            self._send(200, b"[]")
        elif self.headers.get("Authorization"):
            self._send(403, b"Forbidden: Invalid authentication token")
        else:
            self._send(401, b"Unauthorized: Missing authentication token")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_token_errors_say_where_the_token_comes_from(no_token, monkeypatch, capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeDashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main(["status", "--address", address]) == 2
        err = capsys.readouterr().err
        assert "requires an authentication token, and none was found" in err
        assert "~/.ray/auth_token" in err and "ray get-auth-token" in err
        monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
        assert main(["status", "--address", address]) == 2
        assert "rejected the token from $RAY_AUTH_TOKEN" in capsys.readouterr().err
        monkeypatch.setenv("RAY_AUTH_TOKEN", "right")
        assert main(["status", "--address", address]) == 0
        assert "no study jobs" in capsys.readouterr().out
    finally:
        server.shutdown()


def test_an_unknown_study_on_a_cluster_is_bad_input(no_token, monkeypatch, capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeDashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = ["--address", f"http://127.0.0.1:{server.server_address[1]}"]
    monkeypatch.setenv("RAY_AUTH_TOKEN", "right")
    try:
        for command in (["logs", "nosuch"], ["stop", "nosuch"], ["status", "nosuch"]):
            assert main([*command, *address]) == 2
            err = capsys.readouterr().err
            assert err.startswith("ablate: error: no job of study 'nosuch'")
            assert "studies with jobs there: none" in err
    finally:
        server.shutdown()


# ---- shared storage through pyarrow.fs ---------------------------------------------------
def test_results_on_a_storage_uri(tmp_path):
    folder = f"file://{tmp_path}/store/study"
    assert results.probe(f"file://{tmp_path}/store") is None
    assert not results.has_results(folder)
    row = {"study": "s", "trial_id": "a", "trial_name": "t000", "trial_key": "k", "seed": 1}
    results.write_part([row | {"epoch": 1, "wall_s": 1.0, "status": "running"}], folder, "a")
    assert results.has_results(folder) and len(results.rows(folder)) == 1
    table = results.compact(folder, {"a": "completed"}, {"a": "node-1"})
    assert table == f"{folder}/results.parquet"
    rows = results.read(table).to_pylist()
    assert rows[0]["status"] == "completed" and rows[0]["node"] == "node-1"
    assert not list((tmp_path / "store/study/parts").iterdir())
    results.write_text(folder, "study.json", "{}")
    assert results.read_text(folder, "study.json") == "{}"
    assert results.read_text(folder, "nothing.json") is None
    assert "Unrecognized filesystem" in (results.probe("nosuch://x") or "")

    from ablate.report import resolve  # `ablate report file:///.../study` copies it here first

    info = resolve(folder, tmp_path / "results", None, use_mlflow=False)
    assert info.folder == (tmp_path / "results/study").resolve() and info.name == "study"
    assert (info.folder / "results.parquet").is_file()


# ---- pending trials explain themselves -----------------------------------------------------------
def test_pending_message_names_the_missing_resource():
    nodes = [("node a (10.0.0.1)", {"CPU": 8}, {"CPU": 8}), ("node b", {"CPU": 4}, {"CPU": 0})]
    text = cluster_nodes.pending_message({"CPU": 1, "GPU": 1}, 2, 75, nodes)
    assert "2 trials pending for 75 s: each needs 1 CPU + 1 GPU on one node" in text
    assert "node a (10.0.0.1): CPU 8 free of 8, GPU 0 free of 0" in text
    assert "missing: no node has GPU at all" in text
    busy = cluster_nodes.pending_message({"CPU": 4}, 1, 60, [("n", {"CPU": 4}, {"CPU": 1})])
    assert "busy: every node's CPU is in use by other work" in busy
    big = cluster_nodes.pending_message({"CPU": 16}, 1, 60, [("n", {"CPU": 8}, {"CPU": 8})])
    assert "no node has 16 CPU" in big


def test_pending_notice_speaks_only_when_nothing_of_the_study_runs(monkeypatch, capsys):
    monkeypatch.setattr(cluster_nodes, "free_per_node", lambda: [("n", {"CPU": 2}, {"CPU": 0})])
    notice = tuning.PendingNotice({"CPU": 1, "GPU": 1}, after=0, every=0)
    waiting = SimpleNamespace(trial_id="a", status="PENDING")
    notice.on_step_end(1, [waiting, SimpleNamespace(trial_id="b", status="RUNNING")])
    assert capsys.readouterr().out == ""  # queued behind our own trial: normal
    notice.on_step_end(2, [waiting])
    assert "missing: no node has GPU at all" in capsys.readouterr().out


def test_a_trial_must_fit_on_one_node(monkeypatch):
    from ablate.errors import SpecError
    from ablate.spec import load

    spec = load(REPO / QUICKSTART)  # 1 CPU per trial
    nodes = [
        {"NodeID": "a" * 20, "Alive": True, "NodeManagerAddress": "h1", "Resources": {"CPU": 0.5}},
        {"NodeID": "b" * 20, "Alive": True, "NodeManagerAddress": "h2", "Resources": {"CPU": 0.5}},
    ]
    monkeypatch.setattr(cluster_nodes.ray, "cluster_resources", lambda: {"CPU": 1.0})
    monkeypatch.setattr(cluster_nodes.ray, "nodes", lambda: nodes)
    with pytest.raises(SpecError, match="1 CPU on one node, and no node has that much"):
        cluster_nodes.check_resources(spec)
    assert cluster_nodes.machines() == {"h1", "h2"}


# ---- cluster/: the configs a user edits ----------------------------------------------------------
def cluster_yaml() -> dict[str, list]:
    docs = {}
    for path in sorted(CLUSTER.rglob("*.yaml")) + sorted(CLUSTER.rglob("*.yml")):
        docs[str(path.relative_to(CLUSTER))] = [
            d for d in yaml.safe_load_all(path.read_text()) if d
        ]
    return docs


def test_cluster_configs_parse_and_agree_with_the_readme():
    readme = (CLUSTER / "README.md").read_text()
    docs = cluster_yaml()
    assert {"gpu-cluster.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml"} <= set(docs)
    image = re.search(r"^IMAGE = (\S+)$", readme, re.M)
    assert image, "cluster/README.md names the image on a line `IMAGE = ...`"
    image = image.group(1)
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "ray[default" in (REPO / "pyproject.toml").read_text()

    launcher = docs["gpu-cluster.yaml"][0]
    jsonschema.validate(launcher, json.loads((AUTOSCALER / "ray-schema.json").read_text()))
    assert launcher["docker"]["image"] == image
    assert any(t["resources"].get("GPU") for t in launcher["available_node_types"].values())
    head = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-port=8265" in head and "RAY_AUTH_MODE=token" in head
    assert "ray up cluster/gpu-cluster.yaml" in readme

    kinds = {d["kind"]: d for name, ds in docs.items() if name.startswith("kuberay/") for d in ds}
    raycluster, rayjob = kinds["RayCluster"], kinds["RayJob"]
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert raycluster["kind"] == "RayCluster" and rayjob["kind"] == "RayJob"
    for manifest in (raycluster["spec"], rayjob["spec"]["rayClusterSpec"]):
        pods = [manifest["headGroupSpec"]] + manifest["workerGroupSpecs"]
        for group in pods:
            (container,) = group["template"]["spec"]["containers"]
            assert container["image"] == image
            assert {"name": "RAY_AUTH_MODE", "value": "token"} in container["env"]
    entry = rayjob["spec"]["entrypoint"]
    assert entry.startswith("ablate search search_spaces/")
    assert "--tracking-uri http://mlflow:5000" in entry and "--storage" in entry
    assert (REPO / entry.split()[2]).is_file()
    assert "kubectl apply -f cluster/kuberay/rayjob.yaml" in readme

    mlflow_text = "".join(p.read_text() for p in (CLUSTER / "mlflow").glob("*.yaml"))
    assert mlflow_text.count("mlflow server") == 2 and mlflow_text.count("postgresql://") == 2
    assert "--artifacts-destination" in mlflow_text and "--port 5000" in mlflow_text
    service = [d for d in docs["mlflow/mlflow-k8s.yaml"] if d["kind"] == "Service"]
    assert {
        d["metadata"]["name"]: d["spec"]["ports"][0]["port"]
        for d in service
        if d["metadata"]["name"] == "mlflow"
    } == {"mlflow": 5000}
    for command in ("ablate submit", "ablate status", "ablate logs", "ablate report", "ablate ui"):
        assert command in readme


# ---- a real two-node cluster -------------------------------------------------------------------
def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    ray = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen(
        [ray, "start", "--block", "--disable-usage-stats", "--num-cpus", "1",
         "--object-store-memory", str(200 * 1024**2), "--node-ip-address", "127.0.0.1", *args],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _node_ports() -> list[str]:
    names = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    )
    chosen = [free_port() for _ in names]
    ports = [a for name, port in zip(names, chosen, strict=True) for a in (name, str(port))]
    low = free_port() // 100 * 100 % 50000 + 10000
    while any(low <= port <= low + 60 for port in chosen):  # Ray refuses overlapping ports
        low = low + 100 if low < 59000 else 10000
    return [*ports, "--min-worker-port", str(low), "--max-worker-port", str(low + 60)]


def _came_up(log: Path, proc: subprocess.Popen, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def _start_node(args: Callable[[], list[str]], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start` with the arguments `args()` makes (fresh ports each time): again, up to 3
    times, when the node does not come up, e.g. because another process on this machine took
    one of its free ports in the meantime."""
    failures = []
    for _ in range(3):
        proc = _ray_start(args(), env, log)
        if _came_up(log, proc):
            return proc
        failures.append(log.read_text(errors="replace")[-1500:])
        _stop(proc)
    pytest.fail(f"{log.name}: the node never came up:\n" + "\n---\n".join(failures))


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` stops that node's processes; then its session's rest."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def loopback_cluster(
    folder: Path, shared_temp_dir: bool, mlflow_server: bool, node_env: dict[str, str] | None = None
):
    """A head and a worker node on 127.0.0.1 with token authentication, and optionally an
    MLflow server. `shared_temp_dir`: both nodes keep their files in one temp folder, as nodes
    started by plain `ray start` on one machine do (/tmp/ray); else a disk of its own per
    node, as on a real cluster. `node_env`: more environment for the nodes (their workers
    inherit it)."""
    token = os.urandom(16).hex()
    temp = Path(tempfile.mkdtemp(prefix="ablr", dir="/tmp"))  # socket paths must stay short
    head_temp, worker_temp = (temp, temp) if shared_temp_dir else (temp / "h", temp / "w")
    head_temp.mkdir(exist_ok=True), worker_temp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_DEDUP_LOGS": "0"}
    env |= node_env or {}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # `python` = ours
    ports = {"mlflow": free_port()}
    procs: list[subprocess.Popen] = []

    def head() -> list[str]:
        ports.update(gcs=free_port(), dashboard=free_port())
        return ["--head", "--port", str(ports["gcs"]), "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(ports["dashboard"]), "--include-dashboard", "true",
                "--temp-dir", str(head_temp), *_node_ports()]  # fmt: skip

    def worker() -> list[str]:
        return ["--address", f"127.0.0.1:{ports['gcs']}", "--temp-dir", str(worker_temp),
                *_node_ports()]  # fmt: skip

    try:
        procs.append(_start_node(head, env, folder / "head.log"))
        if mlflow_server:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                 f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
                 str(folder / "artifacts"), "--host", "127.0.0.1", "--port",
                 str(ports["mlflow"]), "--workers", "1"],
                stdout=(folder / "mlflow.log").open("w"), stderr=subprocess.STDOUT,
                start_new_session=True,
            ))  # fmt: skip
        procs.insert(0, _start_node(worker, env, folder / "worker.log"))
        deadline = time.monotonic() + 90
        while mlflow_server:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ports['mlflow']}/health", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail((folder / "mlflow.log").read_text()[-3000:])
                time.sleep(0.5)
        yield SimpleNamespace(
            address=f"http://127.0.0.1:{ports['dashboard']}", token=token,
            tracking=f"http://127.0.0.1:{ports['mlflow']}", env=env,
            gcs=f"127.0.0.1:{ports['gcs']}", worker_temp=worker_temp,
        )  # fmt: skip
    finally:
        for proc in procs:  # the worker first, then the head, then MLflow
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def two_nodes(tmp_path):
    """Two nodes with a disk each, and an MLflow server."""
    with loopback_cluster(tmp_path, shared_temp_dir=False, mlflow_server=True) as nodes:
        yield nodes


@pytest.mark.slow
def test_submit_the_quickstart_to_a_two_node_cluster(two_nodes, tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", two_nodes.token)  # as a user would, no RAY_AUTH_MODE
    storage = tmp_path / "shared"
    # the quickstart with 4 trials (2 at once: one per 1-CPU node), from a folder of the user's
    # own, so the ablate code travels as py_modules beside the working directory
    work = tmp_path / "work"
    (work / "search_spaces").mkdir(parents=True)
    text = (REPO / QUICKSTART).read_text()
    assert "trials: 8" in text
    (work / QUICKSTART).write_text(text.replace("trials: 8", "trials: 4"))
    monkeypatch.chdir(work)
    address = ["--address", two_nodes.address]
    code = main(["submit", QUICKSTART, "train.epochs=1", "dataset.shots=4", "--follow", *address,
                 "--tracking-uri", two_nodes.tracking, "--storage", str(storage)])  # fmt: skip
    out = "\n".join(capsys.readouterr())
    assert code == 0, out[-6000:]
    assert "submitted study 'quickstart'" in out and "SUCCEEDED" in out
    assert "Study 'quickstart' finished" in out

    mlflow = MlflowClient(two_nodes.tracking)
    experiment = mlflow.get_experiment_by_name("quickstart")
    runs = mlflow.search_runs([experiment.experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags["ablate.role"] == "trial"]
    seeds = [r for r in runs if r.data.tags["ablate.role"] == "seed"]
    assert len(trials) == 4 and len(seeds) == 8
    assert {r.data.tags["ablate.status"] for r in trials} == {"completed"}
    by_trial = {r.data.tags["ablate.trial_id"]: r.data.tags["ablate.node"] for r in trials}
    assert len(set(by_trial.values())) == 2, "the trials ran on one node only"

    table = pq.read_table(storage / "quickstart/results.parquet").to_pylist()
    assert len(table) == 8  # 4 configurations x 2 seeds x 1 epoch
    assert {r["trial_id"]: r["node"] for r in table} == by_trial  # the same trials, same nodes
    assert (storage / "quickstart/study.json").is_file()

    assert main(["status", "quickstart", *address]) == 0
    assert "SUCCEEDED" in capsys.readouterr().out
    assert main(["logs", "quickstart", *address]) == 0
    assert "Results table" in capsys.readouterr().out
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert main(["status", *address]) == 2
    assert "rejected the token from $RAY_AUTH_TOKEN" in capsys.readouterr().err
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["status", *address]) == 2
    assert "none was found" in capsys.readouterr().err


def test_a_multi_machine_cluster_needs_shared_storage_and_a_tracking_server(monkeypatch):
    from ablate.errors import ConfigError
    from ablate.search import driver

    monkeypatch.setattr(cluster_nodes, "machines", lambda: {"10.0.0.1", "10.0.0.2"})
    with pytest.raises(ConfigError) as refused:
        driver.check_cluster(None, "sqlite:///mlflow.db")
    text = str(refused.value)
    assert "nodes on 2 machines (10.0.0.1, 10.0.0.2)" in text
    assert "--storage is needed" in text and "is a file on this machine" in text


@pytest.mark.slow
def test_a_study_on_an_object_store_uri_finishes_and_is_found_again(ray_local, in_tmp, capsys):
    """--storage file://... goes through pyarrow.fs for the parts, results.parquet, study.json
    and Ray Tune's experiment; running again finds the finished study there."""
    from tests.e2e.test_resume import study_file

    spec = study_file(in_tmp, trials=2, seeds="[1]", epochs=2, name="onstore")
    store = f"file://{in_tmp}/store"
    assert main(["search", str(spec), "--storage", store]) == 0
    rows = results.rows(f"{store}/onstore")
    assert len(rows) == 2 * 1 * 2 and {r["status"] for r in rows} == {"completed"}
    assert (in_tmp / "store/onstore/study.json").is_file()
    assert (in_tmp / "store/onstore/ray/onstore").is_dir()
    assert not (in_tmp / "results/onstore/results.parquet").exists()
    assert main(["search", str(spec), "--storage", store]) == 0
    assert "already finished" in capsys.readouterr().out


@pytest.mark.slow
def test_the_plain_submit_from_the_project_root_to_a_loopback_cluster(tmp_path):
    """How users try submission first: `ray start --head`, then a worker, on this machine (both
    nodes in one temp folder, token authentication on), and from the project root
    `ablate submit search_spaces/quickstart.yaml --follow`: relative paths, the default SQLite
    store. The job runs in a copy of the project unpacked under Ray's temp folder, which the
    second node unpacks anew under the running driver; the results must still land where the
    user looks, ./results and ./mlflow.db of the folder the study was submitted from."""
    from mlflow.tracking import MlflowClient

    project = tmp_path / "project"  # the project root: its code, so the job ships no py_modules
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("ablate", "trainers", "search_spaces"):
        shutil.copytree(REPO / name, project / name, ignore=junk)
    shutil.copy(REPO / "pyproject.toml", project)
    quickstart = project / QUICKSTART
    quickstart.write_text(quickstart.read_text().replace("trials: 8", "trials: 2"))
    with loopback_cluster(tmp_path, shared_temp_dir=True, mlflow_server=False) as nodes:
        env = {k: v for k, v in nodes.env.items() if k != "RAY_AUTH_MODE"}  # as a user's shell
        env["HOME"] = str(tmp_path / "home")  # the token from $RAY_AUTH_TOKEN only
        command = [sys.executable, "-m", "ablate.cli", "submit", QUICKSTART, "train.epochs=1",
                   "dataset.shots=4", "--address", nodes.address, "--follow"]  # fmt: skip
        done = subprocess.run(
            command, cwd=project, env=env, capture_output=True, text=True, timeout=900
        )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "SUCCEEDED" in out and "Study 'quickstart' finished" in out

    assert f"results in {project / 'results' / 'quickstart'}" in out
    rows = pq.read_table(project / "results/quickstart/results.parquet").to_pylist()
    assert len(rows) == 2 * 2 * 1  # 2 configurations x 2 seeds x 1 epoch
    assert {r["status"] for r in rows} == {"completed"}
    mlflow = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("quickstart")
    runs = mlflow.search_runs([experiment.experiment_id], max_results=100)
    (study_run,) = [r for r in runs if r.data.tags["ablate.role"] == "study"]
    assert len([r for r in runs if r.data.tags["ablate.role"] == "trial"]) == 2
    artifacts = {a.path for a in mlflow.list_artifacts(study_run.info.run_id)}
    assert "quickstart.yaml" in artifacts  # the file the job failed to find before

    # the job's own output ends with the summary (then `submit --follow` says how it ended)
    job_lines = [line for line in done.stdout.splitlines() if line.strip()]
    last = max(i for i, line in enumerate(job_lines) if "review with: ablate ui" in line)
    assert all(line.startswith("ablate: job ") for line in job_lines[last + 1 :]), job_lines[-8:]
