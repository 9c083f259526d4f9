"""The vllm serve launcher: real processes, real failures."""

import os
import signal
import socket
import stat
import threading
import time

import pytest

from conftest import scene
from srice.agent.prompts import direct_request
from srice.errors import ServingError
from srice.serving.launcher import VllmServer, executor_backend, has_gpu
from srice.serving.openai_http import OpenAIBackend


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_killing_the_server_mid_batch_raises_serving_error_naming_it(tiny_variant, tiny_model, tmp_path):
    server = VllmServer(
        tiny_model,
        served_name=tiny_variant.served_name,
        args=tiny_variant.vllm_args,
        log_path=tmp_path / "vllm.log",
    )
    with server:
        assert server.host == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
        assert server.log_path.exists() and server.log_path.stat().st_size > 0
        pgid = server.process.pid
        backend = OpenAIBackend(
            server.url, server.served_name, concurrency=8, timeout=10, retries=2, backoff=0.2
        )
        requests = [direct_request(scene(seed=i), "Describe the picture.", max_tokens=200) for i in range(48)]
        outcome = {}

        def run():
            began = time.monotonic()
            try:
                backend.generate(requests)
            except Exception as e:  # noqa: BLE001 - the test inspects it below
                outcome["error"] = e
            outcome["seconds"] = time.monotonic() - began

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), "the batch finished before the server could be killed"
        os.killpg(pgid, signal.SIGKILL)
        worker.join(timeout=60)
        assert not worker.is_alive(), "the backend hung after its server died"
    assert isinstance(outcome.get("error"), ServingError)
    assert server.url.removeprefix("http://") in str(outcome["error"])
    assert outcome["seconds"] < 1.0 + 3 * 10 + 1  # within its timeout budget, not a hang
    assert _group_gone(pgid)
    assert _port_free(int(server.url.rsplit(":", 1)[1]))


def test_unhealthy_server_is_killed_with_its_children(tmp_path):
    script = tmp_path / "fake-vllm"
    script.write_text(
        "#!/bin/sh\n# ignores SIGTERM and starts a child, like a stuck engine\n"
        "trap '' TERM\nsleep 600 &\nsleep 600\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    server = VllmServer("unused", executable=str(script), startup_timeout=1.5, log_path=tmp_path / "log")
    began = time.monotonic()
    with pytest.raises(ServingError, match="not healthy after 1.5 s"):
        server.start()
    assert time.monotonic() - began < 30
    assert server.process is None
    assert _group_gone(server.pid)  # the TERM-ignoring shell and its sleeping child are gone


def test_server_that_exits_reports_its_log(tmp_path):
    script = tmp_path / "broken-vllm"
    script.write_text("#!/bin/sh\necho 'ValueError: no such model' >&2\nexit 3\n")
    script.chmod(0o755)
    server = VllmServer("missing", executable=str(script), log_path=tmp_path / "log")
    with pytest.raises(ServingError, match="exited with code 3(.|\n)*no such model"):
        server.start()


def test_missing_executable_is_a_clear_error():
    with pytest.raises(ServingError, match="vllm executable not found.*/nonexistent/vllm"):
        VllmServer("m", executable="/nonexistent/vllm").command()


@pytest.mark.skipif(has_gpu(), reason="vLLM's Ray executor runs on GPU machines")
@pytest.mark.parametrize(
    "args", [["--distributed-executor-backend", "ray"], ["--distributed-executor-backend=ray"]]
)  # noqa: E501
def test_the_ray_executor_on_cpu_is_refused_before_anything_starts(tmp_path, args):
    script = tmp_path / "vllm"
    script.write_text(f"#!/bin/sh\ntouch {tmp_path / 'started'}\nsleep 60\n")
    script.chmod(0o755)
    server = VllmServer("m", executable=str(script), args=["--tensor-parallel-size", "2", *args])
    with pytest.raises(ServingError, match="does not run on CPU.*21602"):
        server.start()
    assert not (tmp_path / "started").exists()
    assert executor_backend(["--distributed-executor-backend", "mp"]) == "mp" and executor_backend([]) is None
