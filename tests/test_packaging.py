"""The package as pip installs it: every subpackage is listed, and a wheel built from this tree,
installed into a clean venv, is a working framebus on its own, outside the source tree.

The clean venv gets the wheel with ``--no-deps`` and sees the project venv's site-packages
through a one-line .pth file (a plain path: the project venv's own .pth files, among them
the editable install's finder, are not run), so no dependency is downloaded; every test
asserts that framebus itself is imported from the clean venv, never from the source tree.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from framebus.support.children import stop

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: What a wheel is built from: the build's inputs, copied, so the build writes nothing here.
SOURCES = ("pyproject.toml", "README.md", "framebus", "clients")
SETUPTOOLS_NEEDED = 77


def packages_on_disk() -> set[str]:
    """framebus and each of its subpackages (a directory with __init__.py), and the packages
    that [tool.setuptools.package-dir] maps from elsewhere (clients/ as framebus.clients)."""
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for init in (ROOT / "framebus").rglob("__init__.py")}
    mapped = PYPROJECT["tool"]["setuptools"].get("package-dir", {})
    return found | {name for name, where in mapped.items()
                    if (ROOT / where / "__init__.py").exists()}


def test_every_subpackage_is_installed():
    setuptools = PYPROJECT["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = packages_on_disk()
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - on_disk == set(), "packages listed that do not exist"


# -- the wheel, in a clean venv ---------------------------------------------------------------


class CleanVenv:
    """A venv holding nothing but the wheel, seeing the project venv's dependencies."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root
        self.wheel = wheel
        self.bin = root / "bin"
        self.python = self.bin / "python"
        self.site = Path(subprocess.run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip())
        self.cwd = root / "elsewhere"  # outside the repository: no framebus/ beside it
        self.cwd.mkdir()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        return {**env, **extra}

    def run(self, *argv: str | os.PathLike, timeout: float = 30, **env: str):
        return subprocess.run([os.fspath(a) for a in argv], cwd=self.cwd, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


def _build_wheel(out: Path) -> Path:
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    assert major >= SETUPTOOLS_NEEDED, (
        f"the venv's setuptools is {setuptools.__version__}; building the wheel offline needs "
        f"setuptools>={SETUPTOOLS_NEEDED} (the dev extras): make install")
    tree = out / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    # No isolation: the venv's own setuptools builds it, so no index is asked for anything.
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                            "--outdir", str(out / "dist"), str(tree)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = list((out / "dist").glob("framebus-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> CleanVenv:
    """`python -m build --wheel` of this tree, installed into a new venv."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(work)
    root = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=60)
    clean = CleanVenv(root, wheel)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(clean.python),
                              "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr
    # The dependencies: the project venv's site-packages, as a plain path (no .pth run).
    deps = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (clean.site / "_framebus_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return clean


@pytest.mark.slow
def test_the_wheel_holds_every_package_and_its_data(venv):
    with zipfile.ZipFile(venv.wheel) as wheel:
        names = set(wheel.namelist())
    packages = {str(Path(n).parent).replace("/", ".") for n in names
                if n.endswith("/__init__.py")}
    assert packages == packages_on_disk()
    assert {"framebus/py.typed", "framebus/testing/rtsp_server.py",
            "framebus/web/static/index.html"} <= names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    # The ring's memory-ordering helper is compiled into the wheel, for this platform.
    assert any(n.startswith("framebus/shm/_order.") and n.endswith(".so") for n in names)


@pytest.mark.slow
def test_the_installed_command_runs(venv):
    done = venv.run(venv.bin / "framebus", "--help")
    assert done.returncode == 0, done.stderr
    for command in ("decode", "broker", "relay", "up", "ls", "stat", "demo", "view"):
        assert command in done.stdout, done.stdout


@pytest.mark.slow
def test_import_framebus_comes_from_the_wheel(venv):
    script = textwrap.dedent(f"""
        import importlib, pathlib
        import framebus
        site = pathlib.Path({str(venv.site)!r})
        assert pathlib.Path(framebus.__file__).is_relative_to(site), framebus.__file__
        for name in {sorted(packages_on_disk())!r}:
            module = importlib.import_module(name)
            assert pathlib.Path(module.__file__).is_relative_to(site), module.__file__
        from importlib import metadata
        from packaging.requirements import Requirement
        dist = metadata.distribution("framebus")  # its metadata too: the wheel's
        assert pathlib.Path(dist.locate_file("framebus")).resolve().is_relative_to(site)
        for line in dist.requires:  # what the wheel declares, and each is there
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({{"extra": ""}}):
                assert req.specifier.contains(metadata.version(req.name), prereleases=True), req
        print("ok", framebus.__file__)
    """)
    done = venv.run(venv.python, "-c", script)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_publish_and_subscribe_from_the_installed_wheel(venv):
    """The wheel's broker and test-pattern producer, and a subscriber on the wheel's API that
    checks every frame against the pattern."""
    broker = f"tcp://127.0.0.1:{_free_port()}"
    stream = f"wheel-{os.getpid()}"
    env = venv.env(FRAMEBUS_BROKER=broker)
    subscriber = textwrap.dedent(f"""
        import pathlib, framebus
        from framebus.testsrc import TestPattern
        assert pathlib.Path(framebus.__file__).is_relative_to({str(venv.site)!r})
        good = 0
        with framebus.Subscriber({stream!r}) as sub:
            while good < 10:
                frame = sub.recv(timeout=20)
                pixels = frame.copy()
                expected = TestPattern(pixels.shape).frame(frame.seq)
                assert (pixels == expected).all(), frame.seq
                good += 1
        print("received", good)
    """)
    started = []
    try:
        for argv in ([venv.bin / "framebus", "broker", "--bind", broker],
                     [venv.bin / "framebus", "testsrc", stream, "--size", "64x48", "--fps", "50"]):
            started.append(subprocess.Popen([os.fspath(a) for a in argv], cwd=venv.cwd, env=env,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, start_new_session=True))
        done = subprocess.run([venv.python, "-c", subscriber], cwd=venv.cwd, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "received 10" in done.stdout, done.stdout + done.stderr
    finally:
        for proc in reversed(started):  # the producer first: it unlinks its ring
            stop(proc, timeout=10)
            proc.stderr.close()
