"""Start and stop a real ``vllm serve`` process for a model variant.

The server runs in its own process group on 127.0.0.1 (unless told otherwise) at a free port, logs
to a file, and is stopped by process group on ``stop()``, at interpreter exit, or on SIGTERM/SIGINT,
so no engine worker outlives the launcher.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from srice.errors import ServingError
from srice.paths import cache_dir

from .cpu_kernels import check_w4a16, cpu_kernels, is_w4a16, vllm_python

# Measured on 2-core CPU machines: compile and multiprocessing only slow start-up there.
CPU_ENV = {
    "TORCH_COMPILE_DISABLE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
QUIET_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_CONFIGURE_LOGGING": "1"}


# vLLM's own default share of its GPU's memory, and what srice leaves for the tools (YOLO, SAM, OWL
# and their activations) when they share the GPU with vllm serve: a server whose share would leave
# less is refused (GPU variants set --gpu-memory-utilization, srice's default 0.8).
VLLM_DEFAULT_GPU_SHARE = 0.9
TOOLS_GPU_SHARE = 0.1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_vllm(executable: str | None = None) -> str:
    """The ``vllm`` to run: the argument, ``$SRICE_VLLM``, the one env/setup.sh recorded, or PATH."""
    named = executable or os.environ.get("SRICE_VLLM")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise ServingError(f"vllm executable not found or not executable: {named}")
        return named
    recorded = Path(sys.prefix) / "etc" / "srice" / "vllm"
    for candidate in (recorded.read_text().strip() if recorded.exists() else None, shutil.which("vllm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServingError("no vllm executable found: run env/setup.sh, set $SRICE_VLLM, or pass --vllm PATH")


def require_w4a16(what: str, executable: str | None = None) -> None:
    """A ``ServingError`` when this machine's vLLM CPU build cannot run W4A16 checkpoints
    (``cpu_kernels``); nothing on a GPU machine, or where no vllm is installed (serving says so)."""
    if has_gpu():
        return
    try:
        python = vllm_python(find_vllm(executable))
    except ServingError:
        return
    if python:
        check_w4a16(cpu_kernels(python), what)


class VllmServer:
    """A ``vllm serve`` child process; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        model: str | Path,
        *,
        served_name: str | None = None,
        args: Sequence[str] = (),
        executable: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        offline: bool = True,
        log_path: Path | None = None,
        startup_timeout: float = 300.0,
        env: dict[str, str] | None = None,
        die_with_parent: bool = False,
        gpu: int = 0,
    ):
        self.model = str(model)
        self.served_name = served_name or Path(self.model).name
        self.args = list(args)
        self.executable = executable
        self.host = host
        self.port = port
        self.offline = offline
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        # the kernel stops the server when the thread that started it dies, even by SIGKILL (a Ray
        # actor killed with its driver); off by default: the demo starts servers from threads that end
        self.die_with_parent = die_with_parent
        self.gpu = gpu  # the GPU it serves on (CUDA_VISIBLE_DEVICES), where there is one
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None  # kept after stop(), to check that the process group is gone
        self.started_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            find_vllm(self.executable),
            "serve",
            self.model,
            "--served-model-name",
            self.served_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.args,
        ]

    def environment(self) -> dict[str, str]:
        """The server's environment: quiet and offline (unless a hub model must download), on a GPU
        only the one it serves on, on the CPU build the settings that start fastest on few cores."""
        env = os.environ | QUIET_ENV | (OFFLINE_ENV if self.offline else {})
        env |= {"CUDA_VISIBLE_DEVICES": str(self.gpu)} if has_gpu() else CPU_ENV
        return env | self.extra_env

    def start(self) -> VllmServer:
        if self.process is not None:
            return self
        if is_w4a16(self.model):  # before start-up: the engine would only die at its first request
            require_w4a16(f"serving the W4A16 checkpoint {self.model}", self.executable)
        if not has_gpu() and executor_backend(self.args) == "ray":
            raise ServingError(
                f"{self.served_name}: vLLM's Ray executor (--distributed-executor-backend ray) does not run "
                "on CPU ('current platform cpu does not support ray', vLLM issue 21602); on CPU serve with "
                "mp or uni, and scale out with srice eval --ray (one vllm serve per node)"
            )
        self.port = self.port or free_port(self.host)
        if self.log_path is None:
            logs = cache_dir() / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.served_name).lstrip(".") or "model"
            self.log_path = logs / f"vllm-{safe}-{self.port}.log"
        if has_gpu():
            check_gpu_share(self, list(_LIVE))
        env = self.environment()
        cmd = self.command()
        if self.die_with_parent:
            cmd = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.pid = self.process.pid
        _LIVE.add(self)
        try:
            self._wait_healthy(began)
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - began
        return self

    def _wait_healthy(self, began: float) -> None:
        while time.monotonic() - began < self.startup_timeout:
            if self.process.poll() is not None:
                raise ServingError(
                    f"vllm serve exited with code {self.process.returncode} before becoming healthy; "
                    f"last log lines:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise ServingError(
            f"vllm serve at {self.url} not healthy after {self.startup_timeout:g} s; log: {self.log_path}"
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after ``grace`` seconds."""
        proc, self.process = self.process, None
        _LIVE.discard(self)
        if proc is None:
            return
        pgid = proc.pid  # start_new_session made the child its group leader
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(pgid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + grace
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def gpu_share(args: Sequence[str]) -> float:
    """The share of its GPU's memory a ``vllm serve`` with these arguments takes
    (``--gpu-memory-utilization``, else vLLM's default)."""
    value = flag_value(args, "--gpu-memory-utilization")
    try:
        return VLLM_DEFAULT_GPU_SHARE if value is None else float(value)
    except ValueError:
        raise ServingError(f"--gpu-memory-utilization must be a number, got {value!r}") from None


def check_gpu_share(server: VllmServer, live: Sequence[VllmServer]) -> None:
    """A ``ServingError`` when ``server`` would take more of its GPU than the servers already on it
    (``live``) and the tools' share leave: over-committed, vLLM would fail at start or the tools
    would run out of memory mid-run."""
    taken = [s for s in live if s is not server and s.gpu == server.gpu]
    share, used = gpu_share(server.args), sum(gpu_share(s.args) for s in taken)
    if used + share > 1.0 - TOOLS_GPU_SHARE + 1e-9:
        others = ", ".join(f"{s.served_name} ({gpu_share(s.args):g})" for s in taken) or "none"
        raise ServingError(
            f"{server.served_name}: vllm serve would take {share:g} of GPU {server.gpu}'s memory, where "
            f"{used:g} is taken (servers: {others}) and {TOOLS_GPU_SHARE:g} is left for the tools; stop a "
            "server, use --server for one that runs, or lower --gpu-memory-utilization in the variant"
        )


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value vllm serve arguments give ``flag`` (``--flag v`` or ``--flag=v``), if any."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def executor_backend(args: Sequence[str]) -> str | None:
    """The ``--distributed-executor-backend`` that vllm serve arguments ask for, if any."""
    return flag_value(args, "--distributed-executor-backend")


# prctl(PR_SET_PDEATHSIG, SIGTERM), kept across exec; gives up if the parent is already gone
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execvp(sys.argv[2], sys.argv[2:])"
)


def server_for(variant, **options) -> VllmServer:
    """A server for a registry ``Variant`` (built-in models are built on first use; hub models may
    download, so only they run without the offline switches)."""
    return VllmServer(
        variant.model_path(),
        served_name=variant.served_name,
        args=variant.vllm_args,
        offline=not variant.is_hub,
        **options,
    )


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def gpu_memory(index: int) -> tuple[str, int] | None:
    """The name and memory (MiB) of NVIDIA GPU ``index`` (nvidia-smi), or None if it cannot say."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "-i", str(index), "--query-gpu=name,memory.total",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        name, total = out.strip().splitlines()[0].rsplit(",", 1)
        return name.strip(), int(float(total))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def share_line(server: VllmServer) -> str:
    """What srice says at start on a GPU: how its memory is shared between vllm serve and the tools."""
    share = gpu_share(server.args)
    known = gpu_memory(server.gpu)
    where = f"GPU {server.gpu}" + (f" ({known[0]}, {known[1] / 1024:.0f} GiB)" if known else "")
    gib = (lambda s: f" = {s * known[1] / 1024:.0f} GiB") if known else (lambda s: "")
    return (f"{where}: vllm serve ({server.served_name}) may use {share:g} of its memory{gib(share)}, the "
            f"tools and other GPU work the remaining {1 - share:g}{gib(1 - share)}")  # fmt: skip


def has_gpu() -> bool:
    """An NVIDIA GPU on this machine (vLLM's GPU build then serves, and not on the CPU)."""
    return shutil.which("nvidia-smi") is not None


_LIVE: set[VllmServer] = set()


def stop_all() -> None:
    for server in list(_LIVE):
        server.stop(grace=5.0)


def _on_signal(signum, frame):
    stop_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL or previous is None:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_PREVIOUS: dict[int, object] = {}
atexit.register(stop_all)


def install_signal_handlers() -> None:
    """Stop live servers on SIGTERM/SIGINT too; the CLI calls this, libraries may choose not to."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        _PREVIOUS[sig] = signal.getsignal(sig)
        signal.signal(sig, _on_signal)
