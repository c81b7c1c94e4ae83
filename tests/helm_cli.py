"""The real helm command line, for the chart tests: from PATH, or from the
virtualenv where .ci/install-helm puts it when it cannot write /usr/local/bin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness import require_binary

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "alertbridge"


def helm_binary() -> str:
    """helm from PATH, or from the virtualenv where .ci/install-helm puts it without root."""
    candidate = Path(sys.executable).parent / "helm"
    return str(candidate) if candidate.exists() else require_binary("helm")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)
