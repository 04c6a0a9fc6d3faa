"""Where the benchmark's binaries and tools are, and what every target is sent."""

import os


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
SIDETRACE = os.path.join(RELEASE, "sidetrace")
MOCK = os.path.join(RELEASE, "examples", "bench-mock")
CLIENT = os.path.join(RELEASE, "examples", "bench-client")
OHA = os.path.join(BENCH, ".tools", "bin", "oha")
LITELLM = os.path.join(BENCH, ".venv", "bin", "litellm")

PROFILE_DIR = os.path.join(BENCH, ".profile")
P99_LIMIT_MS = 5.0
MODEL = "bench-model"
# Sent to every target; LiteLLM's proxy refuses to start without a master key, the others ignore it.
API_KEY = "sk-bench-7f3a9c2e5b1d4f6a8c0e2b4d6f8a1c3e"
