"""imagerec index on a Ray cluster of three nodes, one killed half-way: the catalog of a single machine.

The cluster is Ray's own multi-node test cluster (``ray.cluster_utils.Cluster``):
a head and two worker nodes, each its own raylet with its own CPU, all on this
machine; the library is on a path every node sees, and imagerec's driver
(this process) writes the catalog.

To kill a node while it is surely working, without sleeping on timings, the
workers hold every batch of the later photos (folders ``roll 1`` and ``roll 2``)
at a gate: each worker drops a note naming its node when it starts such a
batch, then waits for the gate file. When the driver has written its first
rows, the test waits for a worker node to hold a batch, kills that node
(its raylet and workers, as a crash would) and opens the gate. The batches the
dead node held must be done again elsewhere for the run to finish.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_library_ray import catalog_with_facts, photos_with_facts
from test_library_robustness import distinct_photos

from imagerec.library import index_library

pytestmark = pytest.mark.slow

GATE = "IMAGEREC_TEST_RAY_GATE"  # the folder of the gate file and the workers' notes
HELD = ("roll 1/", "roll 2/")


def hold_later_batches() -> None:
    """A Ray worker's setup hook: a batch with a held photo waits at the gate (it says so first)."""
    import time
    import uuid
    from pathlib import Path

    import ray

    from imagerec.library.ray_runner import RayAnalyser

    analyse_batch = RayAnalyser.__call__

    def gated(self, batch):
        if any(str(path).startswith(HELD) for path in batch["path"]):
            gate = Path(os.environ[GATE])
            node = ray.get_runtime_context().get_node_id()
            (gate / f"holding-{node}-{uuid.uuid4().hex}").write_text("\n".join(map(str, batch["path"])))
            deadline = time.monotonic() + 600  # a generous bound, so a broken test cannot hang forever
            while not (gate / "open").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return analyse_batch(self, batch)

    RayAnalyser.__call__ = gated


def runtime_env_hook(runtime_env: dict | None) -> dict:
    """``RAY_RUNTIME_ENV_HOOK``: the job imagerec's own ``ray.init`` starts gets the gate above."""
    import ray.cloudpickle

    # The workers cannot import this test module: send its hook by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    env = dict(runtime_env or {})
    env["worker_process_setup_hook"] = hold_later_batches
    env["env_vars"] = {**env.get("env_vars", {}), GATE: os.environ[GATE]}
    return env


def wait_for(condition, what: str, timeout: float = 300.0):
    """Poll ``condition()`` until it returns something true; a generous bound, not a timing assumption."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray.data")
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # The nodes inherit this environment: the models (IMAGEREC_MODEL_DIR), offline mode, the cache.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, workers
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def predictions(path: Path) -> dict[tuple, float]:
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT c.sha256, m.name, p.label, p.score FROM predictions p"
        " JOIN contents c ON c.id = p.content_id JOIN models m ON m.id = p.model_id"
    ).fetchall()
    db.close()
    return {tuple(row[:3]): row[3] for row in rows}


def embeddings(path: Path) -> dict[str, np.ndarray]:
    db = sqlite3.connect(path)
    rows = db.execute("SELECT c.sha256, e.vector FROM embeddings e JOIN contents c ON c.id = e.content_id").fetchall()
    db.close()
    return {sha: np.frombuffer(vector, np.float32) for sha, vector in rows}


def test_a_node_lost_half_way_loses_no_photo_and_counts_none_twice(
    cluster, tmp_path: Path, photos_dir: Path, recognizer, monkeypatch, capfd
):
    cluster, workers = cluster
    root = tmp_path / "shared" / "library"  # every node sees it under this path
    distinct_photos(photos_dir, root, 30)
    photos_with_facts(photos_dir, root)
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(GATE, str(gate))
    monkeypatch.setenv("RAY_RUNTIME_ENV_HOOK", f"{__name__}.runtime_env_hook")
    monkeypatch.delenv("IMAGEREC_RAY_VERBOSE", raising=False)
    killed: list[tuple[str, int]] = []

    def holding_worker_node():
        holding = {note.name.split("-")[1] for note in gate.glob("holding-*")}
        return next((node for node in workers if node.node_id in holding), None)

    def on_progress(done: int, total: int) -> None:
        if done and not killed:
            node = wait_for(holding_worker_node, "a worker node to hold a batch")
            cluster.remove_node(node, allow_graceful=False)  # its raylet and workers die at once
            killed.append((node.node_id, done))
            (gate / "open").touch()

    capfd.readouterr()
    remote = tmp_path / "ray.db"
    summary = index_library(root, catalog=remote, ray=cluster.address, batch_size=4, on_progress=on_progress)
    out, err = capfd.readouterr()

    assert killed, "no node was killed"
    node_id, written_before = killed[0]
    assert 0 < written_before < 32  # killed half-way: rows written before, and photos left to do
    local = tmp_path / "local.db"
    local_summary = index_library(root, catalog=local, models=[recognizer], batch_size=4)
    # Each photo once: recognised, or failed exactly as on one machine (a file that does not decode).
    assert summary.seen == summary.new + summary.failed == 32 and summary.facts_added == 0
    assert (summary.new, summary.decoded, sorted(summary.failures)) == (
        local_summary.new, local_summary.decoded, sorted(local_summary.failures))
    # The batch the dead node was holding was done again by the nodes left.
    held_there = [note.read_text().splitlines() for note in gate.glob(f"holding-{node_id}-*")]
    assert held_there and all(path.startswith(HELD) for paths in held_there for path in paths)
    for chatter in (".cc:", "(raylet)", "Traceback", "WARNING"):
        assert chatter not in out + err, out + err

    on_ray, at_home = catalog_with_facts(remote), catalog_with_facts(local)
    # Rows, hashes, sizes, facts, colours, titles: identical; each photo once.
    for part in ("files", "contents", "facts", "colours", "terms"):
        assert on_ray[part] == at_home[part], part
    assert len(on_ray["files"]) == len({row[0] for row in on_ray["files"]}) == 32
    # Labels identical, scores and embeddings equal to float tolerance (a different process computed them).
    scores_ray, scores_home = predictions(remote), predictions(local)
    assert scores_ray.keys() == scores_home.keys()
    assert [scores_ray[key] for key in sorted(scores_home)] == pytest.approx(
        [scores_home[key] for key in sorted(scores_home)], abs=1e-5)
    vectors_ray, vectors_home = embeddings(remote), embeddings(local)
    assert vectors_ray.keys() == vectors_home.keys()
    for sha, vector in vectors_home.items():
        np.testing.assert_allclose(vectors_ray[sha], vector, atol=1e-5)
