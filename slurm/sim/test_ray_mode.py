"""Tests for the simulator's Ray mode (docs/MULTINODE.md): when it runs as a multi-node server
and when it refuses to serve. Standard library only: the refusal logic is a pure function of
ray.nodes(), and a simulator without Ray must fail the way vLLM does. RealRayTests also run it
against a one-node Ray cluster of the test cluster's Ray venv (slurm/install-ray.sh), when
that is installed; the two-node cluster is exercised by the Swift integration tests
(Tests/IntegrationTests/MultiNodeTests.swift).

Run from the repository root:
    python3 -m unittest slurm/sim/test_ray_mode.py
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

SIM_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SIM_DIR)

import vllm_sim  # noqa: E402


def node(name, gpus, alive=True):
    return {"NodeManagerHostname": name, "NodeManagerAddress": "10.0.0.%d" % len(name),
            "Alive": alive, "Resources": {"GPU": float(gpus), "CPU": 8.0}}


class RayModeTests(unittest.TestCase):
    def test_only_the_ray_backend(self):
        self.assertFalse(vllm_sim.ray_mode(None, 2, 2, 2))
        self.assertFalse(vllm_sim.ray_mode("mp", 2, 2, 2))
        self.assertTrue(vllm_sim.ray_mode("ray", 2, 2, 2))
        self.assertTrue(vllm_sim.ray_mode(" Ray ", 1, 2, None))

    def test_larger_than_the_node_or_more_than_one_stage(self):
        self.assertTrue(vllm_sim.ray_mode("ray", 4, 1, 2))
        self.assertFalse(vllm_sim.ray_mode("ray", 2, 1, 2))
        self.assertFalse(vllm_sim.ray_mode("ray", 8, 1, None))


class RefusalTests(unittest.TestCase):
    def test_two_full_nodes_serve(self):
        self.assertIsNone(vllm_sim.ray_refusal(2, 2, [node("node1", 2), node("node2", 2)]))
        self.assertIsNone(vllm_sim.ray_refusal(1, 4, [node("node1", 2), node("node2", 2)]))

    def test_a_missing_worker_is_refused(self):
        why = vllm_sim.ray_refusal(2, 2, [node("node1", 2)])
        self.assertIn("exceeds the total number of available GPUs", why)
        self.assertIn("2 x pipeline_parallel_size 2 = 4 GPUs", why)
        self.assertIn("has 2 on 1 node(s) (node1: 2 GPU(s))", why)

    def test_a_dead_worker_does_not_count(self):
        why = vllm_sim.ray_refusal(2, 2, [node("node1", 2), node("node2", 2, alive=False)])
        self.assertIn("has 2 on 1 node(s)", why)

    def test_a_worker_without_its_gpus_is_refused(self):
        why = vllm_sim.ray_refusal(2, 2, [node("node1", 2), node("node2", 0)])
        self.assertIn("node2: 0 GPU(s)", why)

    def test_a_stage_must_fit_on_one_node(self):
        # Four GPUs in all, but only one node can hold a stage of two.
        why = vllm_sim.ray_refusal(2, 2, [node("node1", 2), node("node2", 1), node("node3", 1)])
        self.assertIn("each stage's 2 GPUs must be on one node", why)

    def test_an_empty_cluster(self):
        self.assertIn("no alive node", vllm_sim.ray_refusal(1, 2, []))


class WithoutRayTests(unittest.TestCase):
    def test_a_multi_node_server_without_ray_fails_like_vllm(self):
        # A python without Ray (the tests' own, unless it has Ray): exit 1, the reason on stderr.
        try:
            import ray  # noqa: F401
            self.skipTest("this python has Ray")
        except ImportError:
            pass
        p = subprocess.run(
            [sys.executable, os.path.join(SIM_DIR, "vllm_sim.py"), "serve", "m", "--port", "0",
             "--distributed-executor-backend", "ray", "--pipeline-parallel-size", "2"],
            capture_output=True, text=True, timeout=30, env=dict(os.environ, RAY_ADDRESS="127.0.0.1:1"))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("ModuleNotFoundError", p.stderr)
        self.assertIn("the Ray backend needs Ray", p.stderr)


RAY_VENV = os.path.join(SIM_DIR, "..", "..", ".cluster", "ray-venv", "bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@unittest.skipUnless(os.path.exists(os.path.join(RAY_VENV, "ray")),
                     "no .cluster/ray-venv (slurm/install-ray.sh)")
class RealRayTests(unittest.TestCase):
    """One Ray head with 2 GPUs on 127.0.0.1: a server that needs two nodes' worth is refused,
    one that fits is placed on it and serves."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vsim-ray-")
        cls.port = free_port()
        cls.head = subprocess.Popen(
            [os.path.join(RAY_VENV, "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
             "--port=%d" % cls.port, "--num-gpus=2", "--temp-dir=" + cls.tmp, "--block",
             "--include-dashboard=false", "--disable-usage-stats"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", cls.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        cls.tearDownClass()
        raise AssertionError("the Ray head did not listen within 60 s")

    @classmethod
    def tearDownClass(cls):
        os.killpg(cls.head.pid, signal.SIGTERM)
        try:
            cls.head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(cls.head.pid, signal.SIGKILL)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def sim(self, *extra, port=0):
        env = dict(os.environ, RAY_ADDRESS="127.0.0.1:%d" % self.port, VLLM_API_KEY="")
        env.pop("CUDA_VISIBLE_DEVICES", None)
        return subprocess.Popen(
            [os.path.join(SIM_DIR, "bin", "vllm"), "serve", "m", "--host", "127.0.0.1",
             "--port", str(port), "--distributed-executor-backend", "ray"] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def test_a_cluster_short_of_a_node_is_refused(self):
        p = self.sim("--tensor-parallel-size", "2", "--pipeline-parallel-size", "2")
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("the Ray cluster has 2 on 1 node(s)", err)

    def test_a_server_that_fits_is_placed_and_serves(self):
        port = free_port()
        p = self.sim("--tensor-parallel-size", "1", "--pipeline-parallel-size", "2", port=port)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                self.assertIsNone(p.poll(), p.stderr.read() if p.poll() is not None else "")
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            else:
                self.fail("not healthy within 120 s")
        finally:
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=30)
        self.assertIn("Ray cluster: 1 node(s), 2 GPU(s)", out)
        self.assertIn("rank 1 (pipeline stage 1, tensor rank 0)", out)


if __name__ == "__main__":
    unittest.main()
