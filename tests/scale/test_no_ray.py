"""Ray is an optional extra: without it everything else works, and ``--engine ray`` says in one line which extra
to install. Ray options without ``--engine ray``, or beside ``--device``, are refused before any model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from audit_models import PatchReader, write_folder
from click.testing import CliRunner

from saliscope.audit import run_audit
from saliscope.audit.engines import EngineError
from saliscope.cli.main import cli

INSTALL = 'install the optional extra: pip install -e ".[ray]"'


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray as if it were not installed: importing it fails."""
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "data", {"a": 2, "b": 2})


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "reader.pt"
    torch.save(PatchReader(), path)
    return path


@pytest.mark.usefixtures("no_ray")
def test_without_ray_the_ray_engine_names_the_extra_in_one_line(data: Path, model_file: Path, tmp_path: Path) -> None:
    for command in (["audit", str(data)], ["explain", str(data / "a")]):
        result = CliRunner().invoke(
            cli,
            [*command, "--model", str(model_file), "--trust-pickle", "--out", str(tmp_path / "out"), "--engine", "ray"],
        )
        assert result.exit_code == 2, result.output
        assert result.stderr == (
            "error: the Ray engine needs Ray with Ray Data, which is not installed — "
            f'{INSTALL} (from PyPI: pip install "saliscope[ray]")\n'
        )
    assert not (tmp_path / "out").exists()
    with pytest.raises(EngineError, match="needs Ray") as info:
        run_audit(data, PatchReader().eval(), out=tmp_path / "out", engine="ray")
    assert INSTALL in str(info.value.fix)
    # The local engine does not need Ray.
    assert run_audit(data, PatchReader().eval(), out=tmp_path / "local").summary["images"]["audited"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "error: --workers apply to --engine ray only — add --engine ray, or leave them out"),
        (["--ray-address", "auto", "--gpus-per-worker", "1"], "error: --ray-address, --gpus-per-worker apply to"),
        (["--engine", "spark"], "Invalid value for '--engine'"),
    ],
)
def test_ray_options_need_the_ray_engine(
    data: Path, model_file: Path, tmp_path: Path, args: list, message: str
) -> None:
    for command in (["audit", str(data)], ["explain", str(data / "a")]):
        result = CliRunner().invoke(
            cli, [*command, "--model", str(model_file), "--trust-pickle", "--out", str(tmp_path / "o"), *args]
        )
        assert result.exit_code == 2 and message in result.stderr, result.output
    with pytest.raises(Exception, match="apply to the Ray engine only"):
        run_audit(data, PatchReader().eval(), out=tmp_path / "o", workers=2)


def test_the_device_belongs_to_the_local_engine(data: Path, model_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    result = CliRunner().invoke(
        cli, ["audit", str(data), "--model", str(model_file), "--trust-pickle", "--engine", "ray", "--device", "cuda"]
    )
    assert result.exit_code == 2
    assert "--device cuda applies to --engine local" in result.stderr and "--gpus-per-worker 1" in result.stderr


def test_importing_saliscope_does_not_import_ray() -> None:
    code = "import sys, saliscope.audit, saliscope.cli.main, saliscope.cli.pipeline; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
