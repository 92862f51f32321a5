"""``mrt-tui --demo``: simulated GitHub, HuggingFace, ModelScope and WeLink on 127.0.0.1.

A newcomer with no token and no internet sees the whole flow: the upstreams gain realistic
DeepSeek / Qwen items every few seconds, the WeLink endpoint fails part of the time, so events,
rule hits, retries and dead letters all appear within a minute.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
from pathlib import Path

from mrt_engine.simulators.github import GitHubSimulator
from mrt_engine.simulators.huggingface import HuggingFaceSimulator
from mrt_engine.simulators.modelscope import ModelScopeSimulator
from mrt_engine.simulators.openai_compat import OpenAICompatSimulator
from mrt_engine.simulators.welink import WeLinkSimulator

REPOS = ["vllm-project/vllm", "sgl-project/sglang"]
MODELS = [
    "DeepSeek-V3.2",
    "DeepSeek-R1-0528",
    "Qwen3-235B-A22B",
    "Qwen3-Coder-480B",
    "Qwen2.5-VL-72B",
]
TITLES = [
    "[Model] Support {model}",
    "[Bug] {model} produces garbage output with FP8 KV cache",
    "[Perf] Speed up MoE routing for {model}",
    "[Feature] Multi-token prediction for {model}",
    "[Bug] OOM when serving {model} with tensor parallel 8",
    "[Doc] Fix typo in installation guide",
    "[CI] Bump torch to 2.9",
    "[Bugfix] Fix scheduler deadlock under preemption",
]
ORGS = ["deepseek-ai", "Qwen"]


class DemoUpstream:
    """The simulators, a config pointing at them, and a thread that keeps publishing."""

    def __init__(self, *, interval: float = 4.0, seed: int | None = None) -> None:
        self.interval = interval
        self.rng = random.Random(seed)
        self.github = GitHubSimulator()
        self.huggingface = HuggingFaceSimulator()
        self.modelscope = ModelScopeSimulator()
        # Fails a third of the sends at random (retries show up at once), and always fails the
        # alerts about bugs, which end as dead letters after three tries, within a minute.
        self.welink = WeLinkSimulator(fail_rate=0.35, seed=seed, fail_matching="[Bug]")
        # A local OpenAI-compatible server: messages carry its (deterministic) summaries.
        self.ai = OpenAICompatSimulator(api_key=None)
        self.folder = Path(tempfile.mkdtemp(prefix="mrt-demo-"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="demo-upstream", daemon=True)

    def start(self) -> Path:
        """Start everything; returns the path of the demo config."""
        for sim in (self.github, self.huggingface, self.modelscope, self.welink, self.ai):
            sim.start()
        for repo in REPOS:  # some history, recorded as the baseline
            for _ in range(5):
                self._issue(repo)
        for org in ORGS:
            for model in MODELS:
                if model.lower().startswith(org.lower()[:4]):
                    self.huggingface.put_model(f"{org}/{model}")
                    self.modelscope.put_model(f"{org}/{model}")
        config = {
            "poll_interval_seconds": 3,
            "state": {"sqlite_path": str(self.folder / "demo.sqlite3")},
            "log": {"level": "warning"},
            "delivery": {
                "workers": 1,
                "max_attempts": 3,
                "backoff_initial_seconds": 2,
                "backoff_max_seconds": 10,
            },
            "sources": {
                "github": {
                    "repos": REPOS,
                    "api_base": self.github.url,
                    "monitor": {"issues": True, "pulls": True},
                },
                "huggingface": {"orgs": ORGS, "api_base": self.huggingface.url},
                "modelscope": {"orgs": ORGS, "api_base": self.modelscope.url},
            },
            "notify": {"welink": {"webhook_env": "MRT_DEMO_WELINK_URL"}},
            "ai": {"enabled": True, "base_url": self.ai.base_url, "model": "demo-summaries"},
            "rules": [
                {"name": "deepseek", "keywords": ["deepseek"], "priority": 10},
                {"name": "qwen", "keywords": ["qwen"], "priority": 10},
                {"name": "new-models", "event_type": ["model_added"], "priority": 20},
                {
                    "name": "no-docs",
                    "keywords": ["[Doc]"],
                    "fields": ["title"],
                    "action": "suppress",
                    "priority": 50,
                },
                {
                    "name": "perf",
                    "keywords": ["[Perf]"],
                    "fields": ["title"],
                    "action": "tag",
                    "tags": ["perf"],
                },
            ],
        }
        path = self.folder / "demo.json"
        path.write_text(json.dumps(config, indent=2))
        self._thread.start()
        return path

    @property
    def environ(self) -> dict[str, str]:
        return {"MRT_DEMO_WELINK_URL": self.welink.webhook_url}

    def stop(self) -> None:
        """Stop publishing and the simulators, and remove the demo's folder (its config and
        store: call this after the engine that used them has stopped)."""
        self._stop.set()
        for sim in (self.github, self.huggingface, self.modelscope, self.welink, self.ai):
            sim.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _issue(self, repo: str, *, bug: bool = False) -> None:
        titles = [t for t in TITLES if t.startswith("[Bug]")] if bug else TITLES
        title = self.rng.choice(titles).format(model=self.rng.choice(MODELS))
        self.github.add_issue(
            repo,
            title,
            body=f"Reported while serving {self.rng.choice(MODELS)}.",
            labels=tuple(self.rng.sample(["bug", "performance", "new-model", "ci"], 1)),
            user=self.rng.choice(["alice", "bob", "carol"]),
            pull=self.rng.random() < 0.4,
        )

    def _publish(self) -> None:
        published = 0
        while not self._stop.wait(self.interval):
            published += 1
            choice = self.rng.random()
            if published % 5 == 2:  # a bug report now and then: its alert ends as a dead letter
                self._issue(self.rng.choice(REPOS), bug=True)
            elif choice < 0.6:
                self._issue(self.rng.choice(REPOS))
            elif choice < 0.8:
                org, model = self._org_model()
                self.huggingface.put_model(f"{org}/{model}-demo-{self.rng.randrange(1000)}")
            else:
                org, model = self._org_model()
                self.modelscope.put_model(f"{org}/{model}")

    def _org_model(self) -> tuple[str, str]:
        """An organisation and one of its own models (DeepSeek models under deepseek-ai)."""
        org = self.rng.choice(ORGS)
        return org, self.rng.choice([m for m in MODELS if m.lower()[:4] == org.lower()[:4]])
