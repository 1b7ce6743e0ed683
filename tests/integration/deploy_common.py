"""Helpers shared by the deploy validation tests (tests/integration/deploy_*).

Each test collects every problem it finds, prints them all, and exits 1 if
there was any, so that one run tells the whole story.
"""

import os
import pathlib
import sys

ROOT = pathlib.Path(
    os.environ.get("KVQ_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))


class Checker:
    def __init__(self, what):
        self.what = what
        self.problems = []
        self.checks = 0

    def check(self, ok, message):
        """Records `message` as a problem unless `ok`."""
        self.checks += 1
        if not ok:
            self.problems.append(message)
        return ok

    def finish(self):
        if self.problems:
            for p in self.problems:
                print(f"FAIL: {self.what}: {p}")
            print(f"{len(self.problems)} of {self.checks} checks failed")
            sys.exit(1)
        print(f"PASS: {self.what}: {self.checks} checks")
        sys.exit(0)


def load_yaml_documents(path):
    import yaml  # from .venv (scripts/setup)
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def dockerfile_instructions(path):
    """Yields (stage_index, INSTRUCTION, arguments) with continuations joined
    and comments dropped. Stage -1 holds instructions before the first FROM."""
    stage = -1
    logical = ""
    for raw in pathlib.Path(path).read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        word, _, rest = logical.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        yield stage, word, rest.strip()
        logical = ""
