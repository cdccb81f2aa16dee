"""Gather the wheels a lent GPU machine lacks, so the GPU rows run in one device call.

The lent H200 runs Python 3.12 with torch, numpy, scipy, pandas, matplotlib, e3nn and many
more already installed, but none of the science stack (ASE, pymatgen, phonopy, phono3py,
jobflow, atomate2, maggma, ...), and it reaches no package index. This script works out what
``esen-flows`` needs at run time (with ``--with-torchsim``, also its ``bench`` extra), from
the installed metadata of this venv, drops what the device image already holds
(``DEVICE_HAS``) and what the GPU rows never import (``NOT_IMPORTED``), and downloads the rest
as binary wheels for the device's Python at the versions pinned here, into ``.whl/`` (ignored
by git; the device tool carries it). Pure-Python wheels are taken as they are; compiled ones
must exist as manylinux wheels for the target Python.

Usage::

    .venv/bin/python benchmarks/gpu_wheels.py                 # cp312 wheels into .whl/
    .venv/bin/python benchmarks/gpu_wheels.py --list          # what would be fetched
    .venv/bin/python benchmarks/gpu_wheels.py --python-version 3.11 --dest /tmp/whl311

Then, on the device (``benchmarks/gpu_run.sh`` does this)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=$PWD:/tmp/site

Prints a table of the wheels and sizes and, as its last line, a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent

#: Distributions the device image already holds (the device tool's KINDS.md, image 'cuda',
#: read on 2026-11-17), canonicalised. Those esen-flows needs at other versions are fine
#: where their ranges allow it (torch 2.11, numpy 2.5 there).
_DEVICE_IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning
lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py
onnx onnxruntime opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels
sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken
timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
"""
DEVICE_HAS = frozenset(canonicalize_name(n) for n in _DEVICE_IMAGE.split())

#: Needed by the metadata but not imported by the GPU rows, left out to stay within the carry
#: limit (``--keep-all`` takes them too): maggma's S3 store (botocore alone is 16 MB) and its
#: server. (Its SSH tunnel's paramiko is imported with ``maggma.stores``, so it travels.)
NOT_IMPORTED = frozenset(["boto3", "botocore", "s3transfer", "jmespath", "aioitertools", "pyzmq"])

#: manylinux tags tried in turn (pip matches each N exactly).
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
EXTRA_PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (24, 31, 34, 35, 5)]

#: The device tool carries at most this much (working tree and wheels together), bytes.
CARRY_LIMIT = 64 * 2**20


def _target_environment(python_version: str) -> dict[str, str]:
    env = dict(default_environment())
    env["python_version"] = python_version
    env["python_full_version"] = f"{python_version}.0"
    env["implementation_name"] = "cpython"
    env["platform_python_implementation"] = "CPython"
    env["sys_platform"] = "linux"
    env["platform_system"] = "Linux"
    env["platform_machine"] = "x86_64"
    return env


def requirements_closure(
    roots: list[str], python_version: str, stop: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Installed distributions needed by ``roots`` ("name[extra]"), as {name: version}.

    Walks ``Requires-Dist`` of this environment's installed metadata, with markers evaluated
    for the target Python on x86-64 Linux. A distribution in ``stop`` (canonical names: what
    the device already holds) is listed but not walked into: the device brings what it needs,
    and this venv need not hold it (a CUDA torch here would list its nvidia-* packages).
    """
    base_env = _target_environment(python_version)
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = []
    for root in roots:
        req = Requirement(root)
        todo.append((req.name, frozenset(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as err:
            missing = f"{name} is needed but not installed in this venv ({sys.prefix})"
            raise SystemExit(missing) from err
        found[canonicalize_name(dist.metadata["Name"])] = dist.version
        if canonicalize_name(name) in stop:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None:
                ok = any(req.marker.evaluate({**base_env, "extra": e}) for e in (extras or {""}))
                if not ok:
                    continue
            todo.append((req.name, frozenset(req.extras)))
    return found


def download(name: str, version: str, dest: Path, python_version: str) -> tuple[bool, str]:
    """One wheel for the target into ``dest``; (ok, pip's last line).

    A distribution published only as a source archive is built into a wheel here; that is
    kept only when it is pure Python (``py3-none-any``), which runs on any Python 3.
    """
    base = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
        "-d", str(dest), f"{name}=={version}",
    ]  # fmt: skip
    last = ""
    for platforms in (PLATFORMS, PLATFORMS + EXTRA_PLATFORMS):
        cmd = base + [arg for p in platforms for arg in ("--platform", p)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode == 0:
            return True, ""
        last = (run.stderr.strip().splitlines() or [""])[-1]
    with tempfile.TemporaryDirectory() as tmp:  # an sdist only: build it, keep it if pure
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp,
               f"{name}=={version}"]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True)
        built = list(Path(tmp).glob("*.whl"))
        if run.returncode == 0 and built:
            if not built[0].name.endswith("-none-any.whl"):
                return False, f"only a source archive, and it builds {built[0].name}"
            shutil.copy2(built[0], dest / built[0].name)
            return True, ""
    return False, last


def _wheel_of(name: str, dest: Path) -> Path | None:
    stem = "[-_.]".join(re.escape(part) for part in re.split(r"[-_.]+", name))
    pattern = re.compile(rf"^{stem}-", re.IGNORECASE)
    hits = [p for p in dest.glob("*.whl") if pattern.match(p.name)]
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def tree_bytes() -> int:
    """Bytes of what the device tool sends besides carried paths: tracked + untracked files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    total = 0
    for rel in filter(None, out.split(b"\0")):
        p = ROOT / rel.decode()
        if p.is_file():
            total += p.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python-version", default="3.12", help="the device's Python (3.12)")
    ap.add_argument("--dest", default=str(ROOT / ".whl"), help="wheel folder (default .whl/)")
    ap.add_argument("--list", action="store_true", help="print what is needed, fetch nothing")
    ap.add_argument(
        "--with-torchsim",
        action="store_true",
        help="also torch-sim-atomistic (the bench extra; its vesin-torch is built per torch)",
    )
    ap.add_argument(
        "--keep-all",
        action="store_true",
        help="also the distributions the GPU rows do not import (NOT_IMPORTED)",
    )
    ap.add_argument(
        "--include-device-packages",
        action="store_true",
        help="fetch everything, also what the device image holds (to test in a bare venv)",
    )
    args = ap.parse_args(argv)

    roots = ["esen-flows[bench]"] if args.with_torchsim else ["esen-flows"]
    stop = frozenset() if args.include_device_packages else DEVICE_HAS
    needed = requirements_closure(roots, args.python_version, stop)
    needed.pop("esen-flows", None)  # the checkout itself travels
    skip = set() if args.include_device_packages else set(DEVICE_HAS)
    if not args.keep_all:
        skip |= NOT_IMPORTED
    wanted = {n: v for n, v in sorted(needed.items()) if n not in skip and n != "torch"}
    if args.list:
        for n, v in wanted.items():
            print(f"{n}=={v}")
        print(json.dumps({"needed": len(needed), "to_fetch": len(wanted)}))
        return 0

    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob("*.whl"):  # two versions of one project would stop the install
        stale.unlink()
    failed: dict[str, str] = {}
    rows = []
    for n, v in wanted.items():
        ok, why = download(n, v, dest, args.python_version)
        wheel = _wheel_of(n, dest) if ok else None
        if wheel is None:
            failed[n] = why or "downloaded, but no wheel of that name in the folder"
            rows.append((f"{n}=={v}", "-", "FAILED: " + failed[n][:60]))
        else:
            rows.append((f"{n}=={v}", f"{wheel.stat().st_size / 2**20:.2f}", wheel.name))
    total = sum(p.stat().st_size for p in dest.glob("*.whl"))
    tree = tree_bytes()
    print(f"{'distribution':40s} {'MiB':>7s}  wheel")
    for r in rows:
        print(f"{r[0]:40s} {r[1]:>7s}  {r[2]}")
    print(
        f"\n{len(wanted) - len(failed)} of {len(wanted)} wheels in {dest}: "
        f"{total / 2**20:.1f} MiB; the working tree {tree / 2**20:.1f} MiB; "
        f"carry limit {CARRY_LIMIT / 2**20:.0f} MiB"
    )
    if total + tree > CARRY_LIMIT:
        print("too large to carry: leave out what the GPU rows do not import", file=sys.stderr)
    print(
        json.dumps(
            {
                "python_version": args.python_version,
                "wheels": len(wanted) - len(failed),
                "failed": failed,
                "wheel_mib": round(total / 2**20, 2),
                "tree_mib": round(tree / 2**20, 2),
                "fits": total + tree <= CARRY_LIMIT,
            }
        )
    )
    return 1 if failed or total + tree > CARRY_LIMIT else 0


if __name__ == "__main__":
    raise SystemExit(main())
