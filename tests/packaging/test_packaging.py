"""The released artefacts work: wheel and sdist build without warnings, the wheel installs
into a fresh virtual environment and runs `harp-prune run` on the bundled data, and the
example third-party plugin (integrations/example_plugin) is found through its entry point.

The fresh environment does not download torch again (about 5 GB): it is a new venv whose
only link to the test environment is a ``.pth`` file listing that environment's
site-packages, so the *dependencies* come from there while harp-plugin itself comes from
the wheel installed with ``--no-deps`` (the editable install of the test environment is not
activated: its ``.pth`` hooks run only in a real site directory). Import paths are checked.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import harp_plugin

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "harp_plugin")


def clean_environment() -> dict[str, str]:
    """No PYTHONPATH (the checkout must not leak in), byte-compiling allowed (no setuptools notes)."""
    drop = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def build(source: Path, outdir: Path, *formats: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *formats, "--outdir", str(outdir), str(source)],
        capture_output=True, text=True, env=clean_environment(), cwd=source, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def copy_tree(names: tuple[str, ...], source: Path, target: Path) -> Path:
    """Build from a copy: a build writes egg-info and build/ folders beside the sources."""
    target.mkdir()
    for name in names:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (source / name).exists():
            shutil.copy2(source / name, target / name)
    return target


def fresh_venv(folder: Path) -> Path:
    """A new venv that sees the test environment's packages (not its editable harp-plugin)."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "_test_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=clean_environment(), timeout=600)


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_runs_with_a_third_party_plugin(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    output = build(copy_tree(SOURCES, ROOT, tmp_path / "src"), dist)
    assert "warning" not in output.lower(), [line for line in output.splitlines() if "warning" in line.lower()]
    wheel = next(dist.glob("harp_plugin-*.whl"))
    assert wheel.name.startswith(f"harp_plugin-{harp_plugin.__version__}-"), "the version has one source"
    assert (dist / f"harp_plugin-{harp_plugin.__version__}.tar.gz").is_file()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "harp_plugin/py.typed" in names
    assert "harp-prune = harp_plugin.cli.main:main" in entry_points

    plugin_source = ROOT / "integrations" / "example_plugin"
    build(copy_tree(("pyproject.toml", "README.md", "harp_example_plugin"), plugin_source, tmp_path / "plugin"),
          dist, "--wheel")
    plugin_wheel = next(dist.glob("harp_example_plugin-*.whl"))

    python = fresh_venv(tmp_path / "venv")
    installed = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                     "--quiet", str(wheel), str(plugin_wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    where = run([str(python), "-c", "import harp_plugin, harp_example_plugin as p; print(harp_plugin.__file__, p.__file__)"],
                tmp_path)
    assert where.stdout.count(str(tmp_path / "venv")) == 2, where.stdout + where.stderr

    cli = tmp_path / "venv" / "bin" / "harp-prune"
    assert run([str(cli), "--version"], tmp_path).stdout.strip() == f"harp-prune {harp_plugin.__version__}"
    listed = run([str(cli), "list", "importances"], tmp_path)
    assert "channel-variance  Example plugin: variance of each output channel's weights.  [plugin example]" in listed.stdout
    main_job = run([str(cli), "run", "--method", "channel-variance", "--max-train", "200", "--max-eval", "40",
                    "--pretrain-epochs", "1", "--finetune-epochs", "0", "--eval-attacks", "fgsm", "--no-progress",
                    "--out-dir", "out"], tmp_path)
    assert main_job.returncode == 0, main_job.stderr[-3000:]
    assert "'channel-variance' importance" in main_job.stdout
    assert (tmp_path / "out" / "report.json").is_file() and (tmp_path / "out" / "pruned.pt").is_file()
