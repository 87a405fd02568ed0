"""Fixtures: running `mixture serve` processes (built beforehand; nothing is built here).

Each server is started as `target/release/mixture serve --model M --port 0 ...`; the fixture
waits for the "listening on http://HOST:PORT" line on stderr and, at the end, stops it with
SIGINT and checks it exits (status 0) within a few seconds: the clean-shutdown check.

Environment: MIXTURE_BIN (default target/release/mixture), MIXTURE_CACHE (default
~/.cache/mixture; SmolLM2 is read from its models/ folder).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("MIXTURE_BIN", ROOT / "target" / "release" / "mixture"))
CACHE = Path(os.environ.get("MIXTURE_CACHE", Path.home() / ".cache" / "mixture"))
SMOLLM2 = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURES = ROOT / "tests" / "fixtures"
API_KEY = "test-key-123"
SHUTDOWN_LIMIT_S = 10.0


class Server:
    def __init__(self, model, args=(), name="server"):
        if not BIN.exists():
            pytest.fail(f"{BIN} is missing: build it first (cargo build --release)")
        self.name = name
        self.log = []
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--model", str(model), "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.url = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"listening on (http://\S+)", line)
                if m and not ready.is_set():
                    self.url = m.group(1)
                    ready.set()

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()
        deadline = time.time() + 120
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                pytest.fail(f"{name} did not start:\n" + "\n".join(self.log[-30:]))
        self.model_id = None

    @property
    def base(self):
        return self.url + "/v1"

    def client(self, key=None, **kw):
        return openai.OpenAI(base_url=self.base, api_key=key or "unused", max_retries=0, timeout=120, **kw)

    def stop(self):
        """SIGINT, then the process must exit 0 within SHUTDOWN_LIMIT_S."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.time()
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(SHUTDOWN_LIMIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None, time.time() - t0
        self.thread.join(2)
        return rc, time.time() - t0


def _start(model, args=(), name="server"):
    s = Server(model, args, name)
    yield s
    rc, took = s.stop()
    assert rc == 0, f"{name}: did not exit cleanly after SIGINT (rc={rc}, {took:.1f}s):\n" + "\n".join(s.log[-20:])


@pytest.fixture(scope="session")
def smol():
    """SmolLM2 with an API key (every client below passes it)."""
    if not SMOLLM2.exists():
        pytest.fail(f"{SMOLLM2} is missing: run tools/fetch_smollm2.sh")
    yield from _start(SMOLLM2, ["--api-key", API_KEY, "--parallel", "4", "--body-limit", "65536", "--context", "1024"], "smollm2")


@pytest.fixture(scope="session")
def client(smol):
    return smol.client(API_KEY)


@pytest.fixture(scope="session")
def small_queue():
    """SmolLM2, one running slot and one waiting: the third concurrent request gets a 429."""
    yield from _start(SMOLLM2, ["--parallel", "1", "--queue", "1"], "smollm2-q1")


# The R1-distill chat template (official, from tests/fixtures/chat_templates): its generation
# prompt ends with "<think>\n", so a model's output is reasoning until it writes "</think>".
R1_TEMPLATE = FIXTURES / "chat_templates" / "deepseek-r1-distill-llama.json"


@pytest.fixture(scope="session")
def deepseek(tmp_path_factory):
    """The tiny random DeepSeek-V3 fixture (MLA + MoE, Hugging Face layout), given the official
    R1-distill chat template through tokenizer_config.json (the fixture itself has none)."""
    src = FIXTURES / "deepseek3" / "hf"
    d = tmp_path_factory.mktemp("ds") / "deepseek-tiny"
    shutil.copytree(src, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = json.loads(R1_TEMPLATE.read_text())["template"]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    yield from _start(d, ["--parallel", "4"], "deepseek")
