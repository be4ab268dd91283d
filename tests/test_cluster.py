"""The cluster path: a real Ray head with token authentication takes a fit through
``ray job submit``; the cluster-launcher YAML, the KubeRay manifest and the Dockerfile are
checked against what Ray and Kubernetes expect of them (no cloud or Docker engine here)."""

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from nint_dist import checkpoint
from tests.helpers import REPO, SAMPLE, free_port, make_tiny_signal, small_image

BIN = Path(sys.executable).parent


def client_env(**extra: str) -> dict[str, str]:
    """This environment with the venv first on PATH and no Ray address or auth settings of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class Head:
    """A single-node Ray cluster started with ``ray start --head --block`` in its own process
    group, so that stopping it ends exactly the processes it started (``ray stop`` would end
    every Ray on the machine)."""

    def __init__(self, root: Path):
        self.root = root
        self.token_path = root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.dashboard = f"http://127.0.0.1:{free_port()}"
        # The head and every process it spawns (job drivers, Train workers) read the token from here.
        self.env = client_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path))
        cmd = [
            str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
            f"--port={free_port()}", "--num-cpus=3", f"--temp-dir={root / 'ray'}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}",
            f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ]  # fmt: skip
        self.log = open(root / "head.log", "wb")
        # No drain on SIGTERM: nothing here needs it, and it would hold the teardown for 30 s.
        head_env = {**self.env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        self.proc = subprocess.Popen(
            cmd, env=head_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        request = urllib.request.Request(
            f"{self.dashboard}/api/version",
            headers={"Authorization": f"Bearer {self.token_path.read_text()}"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited early:\n{self.tail()}")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise RuntimeError(f"the Ray head did not come up in {timeout:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.root / "head.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # drains, then ends the head's processes
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of this group is left
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def ray_head():
    # Ray's socket paths must stay short: a short temporary directory, not pytest's.
    root = Path(tempfile.mkdtemp(prefix="nint-head-"))
    head = Head(root)
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_a_client_without_the_token_is_refused(ray_head):
    """`ray start` with token auth refuses clients that do not run with RAY_AUTH_MODE=token,
    even when they can read the token file: the README's first cluster note."""
    cmd = [str(BIN / "ray"), "job", "list", "--address", ray_head.dashboard]
    refused = subprocess.run(
        cmd, env=client_env(RAY_AUTH_TOKEN_PATH=str(ray_head.token_path)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "Missing authentication token" in refused.stdout + refused.stderr
    accepted = subprocess.run(cmd, env=ray_head.env, capture_output=True, text=True, timeout=120)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


@pytest.mark.slow
def test_ray_job_submit_runs_a_fit_from_shared_storage(ray_head, tmp_path):
    """Ingest to storage every node can read, submit with jobs/submit.sh, check the run's outputs."""
    import zarr

    from nint_dist.ingest import ingest

    source = small_image(SAMPLE, tmp_path / "photo.png", 64)
    store = tmp_path / "shared" / "photo.zarr"
    store.parent.mkdir()
    ingest(source, store, chunk_rows=4)
    run_dir = tmp_path / "shared" / "runs" / "photo"
    data_url = store.as_uri()  # a store URL, as for an object store: opened through fsspec
    overrides = [
        f"data.path={data_url}", f"run.dir={run_dir}", "train.steps=20", "train.workers=2",
        "log.every=10", "log.progress=false", "train.device=cpu",
    ]  # fmt: skip
    done = subprocess.run(
        ["bash", "jobs/submit.sh", "configs/quickstart.yaml", *overrides],
        cwd=REPO, env={**ray_head.env, "RAY_ADDRESS": ray_head.dashboard},
        capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "succeeded" in log and "done: 20 steps" in log, log[-4000:]

    final = json.loads((run_dir / "final.json").read_text())
    assert final["steps"] == 20
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows][-1] == 20
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["path"] == data_url
    assert (run_dir / "reconstruction.png").is_file()
    assert checkpoint.latest(run_dir) == run_dir / "checkpoints" / "step_000020"
    # The reported PSNR agrees with one computed here from the written reconstruction.
    target = np.asarray(zarr.open_array(str(store), mode="r")[...], dtype=np.float64) / 255
    recon = np.asarray(zarr.open_array(str(run_dir / "reconstruction.zarr"), mode="r")[...]) / 255
    psnr = -10 * np.log10(np.mean((recon - target) ** 2))
    assert abs(psnr - final["psnr"]) < 0.1


@pytest.mark.slow
def test_a_job_keeps_its_results_in_a_file_uri_run_dir_and_refuses_a_relative_one(ray_head, tmp_path):
    """Under RAY_ADDRESS the run directory must be where the user can find it: a ``file://``
    URI (a "remote" path every node reaches) holds the run; a relative run.dir, which would land
    in the job's temporary working directory, is one line and no run."""
    signal_path = make_tiny_signal(tmp_path)
    run_dir = tmp_path / "remote" / "run"
    common = [f"data.path={signal_path}", "train.steps=4", "train.workers=2", "log.every=2",
              "log.progress=false", "train.device=cpu"]  # fmt: skip
    env = {**ray_head.env, "RAY_ADDRESS": ray_head.dashboard}

    def submit(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "jobs/submit.sh", "configs/quickstart.yaml", *common, *overrides],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=420,
        )  # fmt: skip

    done = submit(f"run.dir={run_dir.as_uri()}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert json.loads((run_dir / "final.json").read_text())["steps"] == 4
    assert checkpoint.latest(run_dir) == run_dir / "checkpoints" / "step_000004"
    refused = submit("run.dir=runs/relative")
    log = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "error: run.dir=runs/relative is relative" in log, log[-4000:]


@pytest.mark.slow
def test_submit_without_the_token_mode_is_one_line(ray_head):
    env = client_env(RAY_ADDRESS=ray_head.dashboard, RAY_AUTH_TOKEN_PATH=str(ray_head.token_path))
    done = subprocess.run(
        ["bash", "jobs/submit.sh", "configs/quickstart.yaml"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "RAY_AUTH_MODE=token" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.slow
def test_submit_exits_with_the_jobs_own_status(ray_head, tmp_path):
    """A driver that exits 2 (a mistake in the command) makes jobs/submit.sh exit 2, not 1."""
    done = subprocess.run(
        ["bash", "jobs/submit.sh", "configs/quickstart.yaml", "train.stepz=3", f"run.dir={tmp_path / 'r'}"],
        cwd=REPO, env={**ray_head.env, "RAY_ADDRESS": ray_head.dashboard},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 2, log[-3000:]
    assert "error: unknown config key 'train.stepz'" in log and not (tmp_path / "r").exists()


def test_the_submit_runtime_env_keeps_the_upload_small():
    env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    assert {".venv/", "runs/", ".git/"} <= set(env["excludes"])
    assert "working_dir" not in env  # given on the command line, relative to the repository root
    script = (REPO / "jobs" / "submit.sh").read_text()
    assert "--working-dir . --runtime-env jobs/runtime_env.yaml" in script
    assert "-- python -m nint_dist.launch" in script


def load_cluster_yaml() -> dict:
    return yaml.safe_load((REPO / "jobs" / "cluster.yaml").read_text())


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_yaml_matches_the_schema_shipped_with_ray():
    import jsonschema

    schema = ray_schema()
    config = load_cluster_yaml()
    jsonschema.validate(config, schema)
    broken = {**config, "max_worker": config["max_workers"]}  # a misspelt key is caught
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_cluster_yaml_passes_the_checks_ray_up_makes_before_starting_nodes():
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(load_cluster_yaml())  # fills the AWS defaults, as `ray up` does
    validate_config(prepared)
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


def test_cluster_yaml_describes_a_gpu_cluster_on_shared_storage():
    config = load_cluster_yaml()
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu, "no GPU worker node type"
    for t in gpu:
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"]
    # The image is the one docker/Dockerfile builds; the shared filesystem is mounted into it.
    assert config["docker"]["image"].rsplit("/", 1)[-1].startswith("nint-dist:")
    assert "-v /mnt/shared:/mnt/shared" in config["docker"]["run_options"]
    assert any("/mnt/shared" in c and "mount" in c for c in config["initialization_commands"])
    # Every node starts Ray with token auth and the same token, copied from the user's machine.
    assert "/home/ray/.ray/auth_token" in config["file_mounts"]
    for cmd in config["head_start_ray_commands"][-1:] + config["worker_start_ray_commands"][-1:]:
        assert "RAY_AUTH_MODE=token ray start" in cmd
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]
    assert config["setup_commands"]


def test_kuberay_rayjob_manifest():
    import ray

    job = yaml.safe_load((REPO / "jobs" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    entry = shlex.split(spec["entrypoint"])
    assert entry[:3] == ["python", "-m", "nint_dist.launch"]
    assert any(a.startswith("data.path=/mnt/shared/") for a in entry)
    assert any(a.startswith("run.dir=/mnt/shared/") for a in entry)
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]["template"]["spec"]
    groups = cluster["workerGroupSpecs"]
    assert groups and all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in groups)
    images = {c["image"] for c in head["containers"]}
    for g in groups:
        containers = g["template"]["spec"]["containers"]
        images |= {c["image"] for c in containers}
        assert all(int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1 for c in containers)
    assert len(images) == 1 and images.pop().rsplit("/", 1)[-1].startswith("nint-dist:")
    pods = [head] + [g["template"]["spec"] for g in groups]
    for pod in pods:  # every pod mounts the same shared volume at /mnt/shared
        claims = {
            v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        }
        mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert len(claims) == 1 and "/mnt/shared" in mounts


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = (REPO / "docker" / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        logical.append(current.strip())
        current = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in logical]


def test_dockerfile_builds_on_the_matching_ray_gpu_image():
    import ray

    steps = dockerfile_instructions()
    froms = [args for op, args in steps if op == "FROM"]
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert froms == [f"rayproject/ray:{ray.__version__}-{py}-gpu"]
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    runs = " ".join(a for op, a in steps if op == "RUN")
    # A CUDA build of torch from PyTorch's own index, then the package without upgrading Ray.
    assert args["TORCH_CUDA"].startswith("cu")
    assert "--index-url https://download.pytorch.org/whl/${TORCH_CUDA}" in runs
    assert "torch==${TORCH_VERSION}" in runs
    import torch

    assert args["TORCH_VERSION"] == torch.__version__.split("+")[0]  # the torch the tests run with
    assert f'"ray[default,train]=={ray.__version__}"' in runs and "pip install" in runs
    copies = " ".join(a for op, a in steps if op == "COPY")
    for needed in ("pyproject.toml", "nint_dist", "configs"):
        assert needed in copies
    # No ENTRYPOINT: the cluster launcher and KubeRay run their own commands in the container.
    assert not [a for op, a in steps if op == "ENTRYPOINT"]
    cmd = json.loads([a for op, a in steps if op == "CMD"][-1])
    assert cmd[:3] == ["python", "-m", "nint_dist.launch"]


def test_store_urls_are_opened_through_fsspec(tiny_signal):
    from nint_dist.config import load_config
    from nint_dist.errors import UserError
    from nint_dist.launch import resolve_signal

    cfg = load_config(str(REPO / "configs" / "quickstart.yaml"), [f"data.path={tiny_signal.as_uri()}"])
    array, spec, dtype = resolve_signal(cfg)
    assert array is None and spec.grid == (24, 20) and spec.chunk_rows == 4 and dtype == "uint8"
    missing = load_config(
        str(REPO / "configs" / "quickstart.yaml"),
        [f"data.path={(tiny_signal.parent / 'none.zarr').as_uri()}"],
    )
    with pytest.raises(UserError, match="not a readable signal store"):
        resolve_signal(missing)
