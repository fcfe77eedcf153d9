"""The example third-party package `examples/cmp-mmcr`, installed as a user would.

A throw-away virtual environment is made once for the module; it sees this environment's
site-packages through a `.pth` file (so torch is not installed again), and the example
is installed into it from a copy (non-editable, no dependencies, no build isolation). The
CLI then finds the package through its entry point, lists it with its distribution and
version, trains its recipe, and honours the plugin-selection switches.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmp.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cmp-mmcr"
RECIPE = EXAMPLE / "recipe.yaml"
SELECTION_VARIABLES = ("CMP_PLUGINS", "CMP_DISABLE_PLUGIN_AUTOLOAD")


@dataclass(frozen=True)
class Venv:
    """The throw-away environment holding the installed example package."""

    root: Path
    python: Path
    site_packages: Path
    source: Path

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the environment's python with `args`; selection variables unset unless given."""
        base = {k: v for k, v in os.environ.items() if k not in SELECTION_VARIABLES}
        full = {**base, "CMP_PROGRESS": "0", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        return subprocess.run(
            [str(self.python), *args], cwd=cwd or self.root, env=full, capture_output=True, text=True, timeout=300
        )


def checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("cmp_mmcr")
    source = root / "cmp-mmcr"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    home = root / "venv"
    checked(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], capture_output=True, text=True))
    python = home / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(checked(subprocess.run([str(python), "-c", purelib], capture_output=True, text=True)).stdout.strip())
    parent = sysconfig.get_path("purelib")
    (site_packages / "parent_environment.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    env = Venv(root, python, site_packages, source)
    checked(env.run("-c", "import setuptools, pip, torch, cmp"))
    checked(env.run(
        "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "--quiet", str(source),
    ))
    return env


@pytest.fixture
def installed(venv: Venv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Venv]:
    """This process sees the installed package too, for cheap in-process CLI calls."""
    for name in SELECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(venv.site_packages))
    yield venv
    for name in [m for m in sys.modules if m == "cmp_mmcr" or m.startswith("cmp_mmcr.")]:
        del sys.modules[name]


def losses_of(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in listing["slots"]["losses"]}


def test_the_package_is_installed_into_the_environment_not_linked(venv: Venv) -> None:
    assert (venv.site_packages / "cmp_mmcr" / "loss.py").is_file()
    (dist_info,) = venv.site_packages.glob("cmp_mmcr-0.1.0.dist-info")
    assert "mmcr = cmp_mmcr.plugin" in (dist_info / "entry_points.txt").read_text()
    assert not list(venv.site_packages.glob("__editable__*cmp_mmcr*"))


def test_cmp_plugins_lists_the_loss_with_its_distribution_and_version(venv: Venv) -> None:
    done = checked(venv.run("-m", "cmp", "plugins", "--json"))
    listing = json.loads(done.stdout)
    assert listing["warnings"] == []
    assert {"name": "mmcr", "distribution": "cmp-mmcr", "version": "0.1.0"} in listing["plugins"]
    loss = losses_of(listing)["mmcr"]
    assert (loss["plugin"], loss["distribution"], loss["version"]) == ("mmcr", "cmp-mmcr", "0.1.0")
    assert loss["description"] == "MMCR: minus the nuclear norm of the views' centroids; no negatives needed."
    assert loss["params"] == [{"name": "local_weight", "type": "float >= 0", "default": 0.0, "required": False}]
    assert loss["meta"] == {"one_pair": True}
    (preset,) = [m for m in listing["slots"]["methods"] if m["name"] == "mmcr"]
    assert preset["distribution"] == "cmp-mmcr"
    assert preset["parts"]["negative_source"] == "none" and preset["parts"]["loss"] == "mmcr"
    assert losses_of(listing)["nt_xent"]["distribution"] == "cmp-compare"
    assert losses_of(listing)["vicreg"]["distribution"] == "cmp-compare"  # built in: no clash with the example


def test_disabling_autoload_hides_the_package_at_the_cli(venv: Venv) -> None:
    done = checked(venv.run("-m", "cmp", "plugins", "--json", "--slot", "losses", env={"CMP_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    listing = json.loads(done.stdout)
    assert "mmcr" not in losses_of(listing) and "nt_xent" in losses_of(listing)
    assert all(p["distribution"] == "cmp-compare" for p in listing["plugins"])


def test_the_recipe_trains_to_a_result(venv: Venv) -> None:
    out = venv.root / "runs"
    done = checked(venv.run(
        "-m", "cmp", "run", str(RECIPE), "--out", str(out), "--reports", str(venv.root / "reports"),
        "--set", "train.epochs=1", "--set", "train.threads=1", "--set", "baselines=[]",
    ))
    (path,) = (out / "mmcr_digits").glob("mmcr-*/result.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result.get("reason")
    assert result["config"]["parts"]["loss"] == {"name": "mmcr", "params": {"local_weight": 0.0}}
    assert result["config"]["step"] == {"pairs": "one_way", "joint_forward": False}
    assert result["train"]["steps"] == 1437 // 64 and math.isfinite(result["train"]["final_loss"])
    assert result["train_images"] + result["test_images"] == 1797 and result["metrics"]["knn_top1"] * result["test_images"] == pytest.approx(round(result["metrics"]["knn_top1"] * result["test_images"]), abs=1e-6) and result["metrics"]["knn_top1"] > 0.5, result["metrics"]  # a whole count of the test digits, far above chance (0.1)
    assert "mmcr" in done.stdout


def test_symmetric_pairs_are_refused_by_the_losss_declared_need(installed: Venv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", str(RECIPE), "--out", str(tmp_path / "runs"), "--set", "methods.mmcr.pairs=symmetric"]
    assert main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "cmp: error: --set methods.mmcr.pairs=symmetric: loss 'mmcr' compares one view's batch with another's, "
        "so it takes one pair of views (pairs: one_way), not symmetric"
    )


def test_the_packages_own_tests_pass_against_the_installed_package(venv: Venv) -> None:
    checked(venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=venv.source))


@pytest.mark.parametrize(
    ("args", "env", "listed"),
    [
        ([], {}, True),
        (["--plugins", "none"], {}, False),
        ([], {"CMP_PLUGINS": "none"}, False),
        ([], {"CMP_DISABLE_PLUGIN_AUTOLOAD": "1"}, False),
        ([], {"CMP_DISABLE_PLUGIN_AUTOLOAD": "0"}, True),
        (["--plugins", "cmp-mmcr"], {"CMP_DISABLE_PLUGIN_AUTOLOAD": "1"}, True),
        (["--plugins", "mmcr"], {"CMP_PLUGINS": "none"}, True),
        ([], {"CMP_PLUGINS": "cmp-mmcr"}, True),
    ],
    ids=["default", "--plugins none", "CMP_PLUGINS none", "autoload off", "autoload 0", "--plugins dist",
         "--plugins entry point", "CMP_PLUGINS dist"],
)
def test_plugin_selection_at_the_cli(
    installed: Venv, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], env: dict[str, str], listed: bool,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main([*args, "plugins", "--json", "--slot", "losses"]) == 0
    captured = capsys.readouterr()
    losses = losses_of(json.loads(captured.out))
    assert ("mmcr" in losses) is listed and "nt_xent" in losses
    assert captured.err == ""


def test_asking_for_a_plugin_that_is_not_installed_warns_and_loads_no_other(
    installed: Venv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--plugins", "cmp-mmrc", "plugins", "--json", "--slot", "losses"]) == 0
    captured = capsys.readouterr()
    assert "mmcr" not in losses_of(json.loads(captured.out))
    assert captured.err.splitlines() == ["cmp: warning: plugin 'cmp-mmrc' was asked for but is not installed"]


@pytest.mark.parametrize(
    ("params", "key", "message"),
    [
        ({"local_weight": "a lot"}, "local_weight", "input should be a valid number"),
        ({"local_weight": -1}, "local_weight", "input should be greater than or equal to 0 (got -1)"),
        ({"local_weight": True}, "local_weight", "a boolean is not a number (got True)"),
        ({"local_wieght": 1}, "local_wieght", "unknown key 'local_wieght' of loss 'mmcr' (did you mean 'local_weight'?)"),
    ],
)
def test_a_plugins_parameters_are_validated_like_builtins(
    installed: Venv, tmp_path: Path, capsys: pytest.CaptureFixture[str], params: dict[str, Any], key: str, message: str
) -> None:
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["methods"]["mmcr"]["loss"] = {"name": "mmcr", "params": params}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"cmp: error: {path}: methods.mmcr.loss.params.{key}: {message}")
    assert not (tmp_path / "runs").exists()


def test_a_wrong_parameter_given_with_set_names_the_set(installed: Venv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", str(RECIPE), "--out", str(tmp_path / "runs"), "--set", "methods.mmcr.loss.params.local_weight=wide"]
    assert main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cmp: error: --set methods.mmcr.loss.params.local_weight=wide: input should be a valid number")


def test_a_second_package_registering_the_same_name_names_both(
    installed: Venv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "other_mmcr.py").write_text(textwrap.dedent(
        """
        from cmp import hookimpl

        def mmcr(anchors, positives, negatives):
            \"\"\"Another MMCR.\"\"\"
            return -(anchors + positives).norm()

        @hookimpl
        def cmp_register_losses(register):
            register("mmcr", mmcr)
        """
    ))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["-p", "other_mmcr", "plugins"]) == 2
    finally:
        sys.modules.pop("other_mmcr", None)
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "cmp: error: loss 'mmcr' is registered twice: by cmp-mmcr 0.1.0 (plugin 'mmcr') "
        "and by unpackaged (plugin 'other_mmcr')"
    )
