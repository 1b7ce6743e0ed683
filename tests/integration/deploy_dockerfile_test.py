"""The Dockerfile builds with the scripts CI runs, and ships what issue 6 asks.

- The build stage's RUN steps call ./scripts/setup and ./scripts/build and
  never cmake, ninja or make directly; scripts/serve and scripts/test call the
  same scripts/build, and .ci/run execs ./scripts/test. So every CI run
  exercises the image's build steps.
- CUDA 13 devel image to build, the matching runtime image to run.
- Non-root user, EXPOSE 50051 9400, HEALTHCHECK through `kvqctl health`,
  ENTRYPOINT kvq-server, listen addresses from KVQ_* environment.
- .dockerignore keeps build outputs, the venv and .git out of the context.
"""

import os
import re
import shlex

from deploy_common import ROOT, Checker, dockerfile_instructions

c = Checker("Dockerfile")
steps = list(dockerfile_instructions(ROOT / "Dockerfile"))
args = {}
for stage, word, rest in steps:
    if word == "ARG" and "=" in rest:
        k, v = rest.split("=", 1)
        args.setdefault(k, v.strip('"'))


def expand(text):
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


froms = [(s, expand(r)) for s, w, r in steps if w == "FROM"]
c.check(len(froms) == 2, f"two stages expected, found {len(froms)}: {froms}")
if len(froms) == 2:
    build_from, run_from = froms[0][1], froms[1][1]
    m_build = re.fullmatch(r"nvidia/cuda:(13\.\d+\.\d+)-devel-ubuntu24\.04 AS (\w+)",
                           build_from)
    m_run = re.fullmatch(r"nvidia/cuda:(13\.\d+\.\d+)-runtime-ubuntu24\.04", run_from)
    c.check(m_build, f"build stage must be nvidia/cuda:13.x.y-devel-ubuntu24.04 AS name, is {build_from!r}")
    c.check(m_run, f"final stage must be nvidia/cuda:13.x.y-runtime-ubuntu24.04, is {run_from!r}")
    if m_build and m_run:
        c.check(m_build.group(1) == m_run.group(1),
                f"build ({m_build.group(1)}) and runtime ({m_run.group(1)}) CUDA versions differ")

build_runs = [r for s, w, r in steps if s == 0 and w == "RUN"]
run_text = "\n".join(build_runs)
c.check(re.search(r"(^|[\s;&])\./scripts/setup( |$)", run_text, re.M),
        "build stage never runs ./scripts/setup")
c.check(re.search(r"(^|[\s;&])\./scripts/build( |$)", run_text, re.M),
        "build stage never runs ./scripts/build")
for tool in ("cmake", "ninja", "make", "ctest"):
    c.check(not re.search(rf"(^|[\s;&|]){tool}(\s|$)", run_text, re.M),
            f"build stage runs {tool} directly instead of through scripts/")
for s, w, r in steps:
    if w == "RUN" and "--mount=" in r:
        c.check(s == 0, "only the build stage may use a cache mount")

# The same scripts are what a developer and CI run.
for script, must in (("scripts/serve", "scripts/build"),
                     ("scripts/test", "scripts/build"),
                     ("scripts/serve", "scripts/setup"),
                     ("scripts/test", "scripts/setup")):
    path = ROOT / script
    c.check(path.is_file() and os.access(path, os.X_OK), f"{script} is not an executable file")
    if path.is_file():
        c.check(must in path.read_text(), f"{script} does not call {must}")
for script in ("scripts/setup", "scripts/build"):
    path = ROOT / script
    c.check(path.is_file() and os.access(path, os.X_OK), f"{script} is not an executable file")
ci = (ROOT / ".ci/run").read_text() if (ROOT / ".ci/run").is_file() else ""
c.check(re.search(r"^exec \./scripts/test\s*$", ci, re.M), ".ci/run does not `exec ./scripts/test`")
build_script = (ROOT / "scripts/build").read_text()
c.check("CMAKE_BUILD_TYPE=Release" in build_script, "scripts/build does not build Release")

final = [(w, r) for s, w, r in steps if s == 1]


def final_values(word):
    return [r for w, r in final if w == word]


users = final_values("USER")
c.check(users, "final stage sets no USER")
if users:
    user = users[-1].split(":")[0]
    c.check(user not in ("root", "0"), f"final stage runs as {user}")
    c.check(user in ("1000", "ubuntu"), f"final stage USER should be ubuntu / 1000, is {users[-1]}")
exposed = set(" ".join(final_values("EXPOSE")).split())
c.check({"50051", "9400"} <= exposed, f"EXPOSE must list 50051 and 9400, lists {sorted(exposed)}")
health = final_values("HEALTHCHECK")
c.check(len(health) == 1, "final stage needs one HEALTHCHECK")
if health:
    c.check(re.search(r'CMD \[?"?kvqctl', health[0]) and "health" in health[0],
            f"HEALTHCHECK must run `kvqctl ... health`: {health[0]}")
entry = final_values("ENTRYPOINT")
c.check(entry and "kvq-server" in entry[-1], f"ENTRYPOINT must start kvq-server: {entry}")
env_text = " ".join(final_values("ENV"))
env = dict(kv.split("=", 1) for kv in shlex.split(env_text) if "=" in kv)
c.check(env.get("KVQ_LISTEN") == "0.0.0.0:50051", f"KVQ_LISTEN should be 0.0.0.0:50051, is {env.get('KVQ_LISTEN')}")
c.check(env.get("KVQ_METRICS_LISTEN") == "0.0.0.0:9400",
        f"KVQ_METRICS_LISTEN should be 0.0.0.0:9400, is {env.get('KVQ_METRICS_LISTEN')}")
copies = final_values("COPY")
c.check(any(r.startswith("--from=") for r in copies),
        "final stage must copy the binaries from the build stage")
c.check(not any(w == "RUN" and re.search(r"apt-get install.*-dev\b", r) for w, r in final),
        "final stage installs -dev packages")

ignore = (ROOT / ".dockerignore").read_text().split() if (ROOT / ".dockerignore").is_file() else []
for needed in ("build", ".venv", ".git"):
    c.check(any(p.strip("/").rstrip("/") in (needed, needed + "*", needed + "/") for p in ignore),
            f".dockerignore must exclude {needed}/")
c.check(not any(p.strip("/") in ("scripts", "CMakeLists.txt") for p in ignore),
        ".dockerignore excludes what the build needs")

c.finish()
