"""``saliscope explain FOLDER --engine ray`` writes what the local run writes: the same per-image files, byte for
byte (workers write them), the same lines in the same order, one summary.json, the same failures."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from audit_models import PatchReader, write_folder
from click.testing import CliRunner

from saliscope.cli.main import cli

pytest.importorskip("ray.data")
pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_instance"),
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]


def without_costs(value: Any) -> Any:
    """A summary without what varies between two runs of the same work: times and peak memory."""
    if isinstance(value, dict):
        return {k: without_costs(v) for k, v in value.items() if k != "cost"}
    if isinstance(value, list):
        return [without_costs(v) for v in value]
    return value


def timeless(text: str) -> str:
    return re.sub(r"\d+\.\d+s\b", "…s", text)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_folder_explained_on_ray_gives_the_local_runs_files(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", {"a": 4, "b": 3})
    (data / "b" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n torn")
    model = tmp_path / "reader.pt"
    torch.save(PatchReader(), model)
    args = [
        "explain",
        str(data / "a"),
        str(data / "b"),
        "--model",
        str(model),
        "--trust-pickle",
        "--method",
        "gradcam,gradient",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray worker's thread count: the maps match bit for bit
    try:
        local = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "local")])
    finally:
        torch.set_num_threads(threads)
    ray = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"])
    assert local.exit_code == ray.exit_code == 1, ray.output  # one image could not be read
    assert timeless(ray.stdout.replace(f"{tmp_path / 'ray'}", f"{tmp_path / 'local'}")) == timeless(local.stdout)
    assert (
        ray.stderr.splitlines()[-2:]
        == local.stderr.splitlines()[-2:]
        == [
            "1 of 8 images failed:",
            f"  {data / 'b' / 'torn.png'}: {data / 'b' / 'torn.png'} is not an image file Pillow can read — pass a"
            " JPEG, PNG, BMP, GIF, TIFF or WebP image",
        ]
    )
    ours, theirs = files(tmp_path / "ray"), files(tmp_path / "local")
    assert sorted(ours) == sorted(theirs) and len(ours) == 7 * 5 + 1  # 2 maps, 2 arrays and a panel per image
    assert all(ours[name] == theirs[name] for name in ours if name != "summary.json")
    summary = json.loads(ours["summary.json"])
    assert without_costs(summary) == without_costs(json.loads(theirs["summary.json"]))
    assert [i["path"] for i in summary["images"]] == [
        str(data / c / f"{i:03d}.png") for c, n in (("a", 4), ("b", 3)) for i in range(n)
    ]


def test_one_unreadable_image_on_ray_is_the_runs_one_error(tmp_path: Path) -> None:
    torn = tmp_path / "torn.png"
    torn.write_bytes(b"\x89PNG\r\n\x1a\n torn")
    model = tmp_path / "reader.pt"
    torch.save(PatchReader(), model)
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "torn.png").write_bytes(torn.read_bytes())
    result = CliRunner().invoke(
        cli,
        [
            "explain",
            str(folder),
            "--model",
            str(model),
            "--trust-pickle",
            "--out",
            str(tmp_path / "out"),
            "--engine",
            "ray",
        ],
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "is not an image file Pillow can read" in result.stderr and not (tmp_path / "out").exists()
