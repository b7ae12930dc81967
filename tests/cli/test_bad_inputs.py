"""`saliscope explain` on bad inputs: one `error:` line naming the problem and the fix, a non-zero exit,
no traceback, and nothing half-written. Cases found by driving the real CLI by hand."""

from __future__ import annotations

import errno
import json
import os
import shutil
import urllib.error
from pathlib import Path

import pytest
from fakes import deny_listing

from saliscope.cli.main import cli


def all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def one_error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ----- images and folders -----------------------------------------------------------------------------


def test_symlink_loop_is_named_as_such(runner, tmp_path):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(tmp_path / "a.png"), "-o", str(out)])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "a.png is a symbolic link that loops back on itself" in line and "not found" not in line
    assert not out.exists()


def test_empty_folder_among_good_images_is_a_listed_failure(runner, chelsea_png, tmp_path):
    (tmp_path / "nothing").mkdir()
    out = tmp_path / "out"
    result = runner.invoke(
        cli, ["explain", str(chelsea_png), str(tmp_path / "nothing"), "-o", str(out), "-m", "gradient"]
    )
    assert result.exit_code == 1  # was 0 with a warning that scrolled away
    tail = result.stderr.strip().splitlines()[-2:]
    assert tail[0] == "1 of 2 images failed:"
    assert tail[1].startswith(f"  {tmp_path / 'nothing'}: no images found in the folder")
    assert all_files(out) == ["chelsea/gradient.npy", "chelsea/gradient.png", "chelsea/panel.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [f["path"] for f in summary["failures"]] == [str(tmp_path / "nothing")]


def test_unlistable_folder_is_a_user_error_not_a_bug(runner, chelsea_png, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(chelsea_png, locked / "cat.png")
    deny_listing(monkeypatch, locked)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(locked), "-o", str(out)])
    assert result.exit_code == 2  # was 3: "internal error: PermissionError"
    line = one_error_line(result)
    assert line == (
        f"error: no permission to list the folder {locked} — check the folder's permissions (it needs read and execute)"
    )
    assert not out.exists()


def test_a_dotted_name_does_not_write_into_the_output_folder_itself(runner, chelsea_png, tmp_path):
    odd = tmp_path / "..png"  # its stem is "."
    shutil.copy(chelsea_png, odd)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(odd), "-o", str(out), "-m", "gradient"])
    assert result.exit_code == 0, result.output
    assert all_files(out) == ["image/gradient.npy", "image/gradient.png", "image/panel.png", "summary.json"]


# ----- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-m", "gradient,,smoothgrad"],
            "error: --method 'gradient,,smoothgrad' has an empty name (a stray comma) — separate method names"
            " with single commas, e.g. --method gradient,smoothgrad",
        ),
        (["-m", "gradient,"], "error: --method 'gradient,' has an empty name (a stray comma)"),
        (["--target", "1e3"], "error: --target '1e3' is not a whole class index — pass an integer from 0 to 999"),
        (["--target", "3.0"], "error: --target '3.0' is not a whole class index"),
        (["--target", " "], "error: --target is empty — pass 'predicted', a class index 0..999 or a label name"),
        (["--target", "tabby cat"], "error: unknown label 'tabby cat' — did you mean 'tabby', 'tiger cat'"),
        (["--target", "cat"], "error: unknown label 'cat' — did you mean 'tiger cat', 'Persian cat'"),
        (
            ["--target", "zzqqxx"],
            "error: unknown label 'zzqqxx' — pass a label name exactly as the model spells it"
            " (e.g. 'tench'), or pass a class index 0..999",
        ),
        (["--device", "cuda:7"], "error: --device cuda:7 was asked for but"),
        (["--device", "meta"], "error: --device meta cannot run a model — use --device cpu or --device cuda"),
        (
            ["--arch", "timm:resnet18"],
            "error: the architecture 'timm:resnet18' is only used with a local weights file, not with 'default'"
            " — drop --arch, or pass the weights file with --model",
        ),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(runner, chelsea_png, tmp_path, args, message):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert one_error_line(result).startswith(message)
    assert not out.exists()


# ----- the output folder ------------------------------------------------------------------------------


def test_out_inside_a_regular_file_fails_before_any_work(runner, chelsea_png, tmp_path):
    (tmp_path / "taken").write_text("x")
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(tmp_path / "taken" / "sub")])
    assert result.exit_code == 2
    assert one_error_line(result) == (
        f"error: the output folder {tmp_path / 'taken' / 'sub'} cannot be created: "
        f"{tmp_path / 'taken'} is a file, not a folder — pass another --out folder"
    )
    assert result.stdout == ""  # no model run: the error came first (it used to come after explaining)
    assert (tmp_path / "taken").read_text() == "x"


def test_out_existing_file_is_refused(runner, chelsea_png, tmp_path):
    (tmp_path / "taken").write_text("x")
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert "exists and is not a folder" in one_error_line(result)
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize("sub", ["", "new"])
def test_unwritable_out_fails_before_any_work(runner, chelsea_png, tmp_path, monkeypatch, sub):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root ignores the mode: simulate what everyone else gets
        real_access = os.access

        def access(p, mode, **kw):
            return False if Path(p) == locked and mode & os.W_OK else real_access(p, mode, **kw)

        monkeypatch.setattr(os, "access", access)
    out = locked / sub if sub else locked
    try:
        result = runner.invoke(cli, ["explain", str(chelsea_png), str(chelsea_png), "-o", str(out)])
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2  # was 1 after explaining every image, each failing to write
    where = f" (it would be created in {locked})" if sub else ""
    assert one_error_line(result) == (
        f"error: no permission to write to the output folder {out}{where} — pass a folder you can write to with --out"
    )
    assert result.stdout == ""
    assert list(locked.iterdir()) == []


def test_out_below_a_folder_that_cannot_be_searched(runner, chelsea_png, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    real_stat = Path.stat

    def stat(self, **kwargs):  # what stat() gives everyone but root under a folder of mode 0o600
        if self.parent == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(locked / "out")])
    assert result.exit_code == 2  # was 3: "internal error: PermissionError"
    assert one_error_line(result) == (
        f"error: no permission to reach the output folder {locked / 'out'} (a folder"
        " on its path cannot be searched) — pass a folder you can write to with --out"
    )


def test_a_failed_write_leaves_none_of_that_images_files(runner, chelsea_png, tmp_path, monkeypatch):
    from saliscope.cli import pipeline

    other = tmp_path / "other.png"
    shutil.copy(chelsea_png, other)
    real_save_npy = pipeline.save_npy

    def save_npy(array, path):
        if Path(path).parent.name == "other":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save_npy(array, path)

    monkeypatch.setattr(pipeline, "save_npy", save_npy)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), str(other), "-o", str(out), "-m", "gradient"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"  {other}: cannot write {out / 'other' / 'gradient.npy'}: No space left on device"
        " — check --out and free disk space"
    )
    # other/gradient.png was written before the .npy failed; it is removed, and so is other/
    assert all_files(out) == ["chelsea/gradient.npy", "chelsea/gradient.png", "chelsea/panel.png", "summary.json"]
    assert not (out / "other").exists()


def test_a_failed_write_of_a_lone_image_leaves_no_output_folder(runner, chelsea_png, tmp_path, monkeypatch):
    from saliscope.cli import pipeline

    def save_png(obj, path):
        if Path(path).name == "panel.png":
            raise OSError(errno.EIO, "Input/output error")
        return real_save_png(obj, path)

    real_save_png = pipeline.save_png
    monkeypatch.setattr(pipeline, "save_png", save_png)
    out = tmp_path / "a" / "b"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), "-m", "gradient"])
    assert result.exit_code == 2
    assert "Input/output error" in one_error_line(result)
    assert not (tmp_path / "a").exists()


# ----- models offline ---------------------------------------------------------------------------------


def offline_model_error(runner, image, out, model):
    """The one error line of a run whose model weights cannot be had; checks what every such run must do."""
    result = runner.invoke(cli, ["explain", str(image), "-o", str(out), "--model", model])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "load_model(" not in line and "pretrained=False" not in line  # advice as options, not Python
    assert not out.exists()
    return line


def test_timm_weights_offline_say_how_to_pass_a_file_as_options(runner, chelsea_png, tmp_path, monkeypatch):
    from saliscope.models import timm_zoo

    monkeypatch.setattr(timm_zoo, "hf_cached_file", lambda *a, **k: None)
    monkeypatch.setattr(timm_zoo, "torch_hub_checkpoint", lambda url: tmp_path / "no-cache.pth")
    monkeypatch.setattr(timm_zoo, "host_reachable", lambda *a, **k: (False, "huggingface.co unreachable: offline"))
    out = tmp_path / "out"
    line = offline_model_error(runner, chelsea_png, out, "timm:resnet18")
    assert line.startswith("error: weights for timm:resnet18 are not on this machine and could not be downloaded")
    assert line.endswith("and pass the file: --model model.safetensors --arch timm:resnet18")


def test_torchvision_weights_offline_say_how_to_pass_a_file_as_options(runner, chelsea_png, tmp_path, monkeypatch):
    import torch

    from saliscope.models import torchvision_zoo

    monkeypatch.setattr(torchvision_zoo, "torch_hub_checkpoint", lambda url: tmp_path / "hub" / Path(url).name)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    out = tmp_path / "out"
    line = offline_model_error(runner, chelsea_png, out, "torchvision:resnet18")
    assert line.startswith("error: weights for torchvision:resnet18 are not on this machine")
    assert line.endswith("or pass a local file: --model path.pth --arch torchvision:resnet18")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{tmp}/nonexistent.pt", "error: model file not found: {tmp}/nonexistent.pt — check the path"),
        ("{tmp}/random.pt", "error: {tmp}/random.pt is not a readable PyTorch model file"),
    ],
)
def test_bad_model_files(runner, chelsea_png, tmp_path, spec, message):
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 16)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), "--model", spec.format(tmp=tmp_path)])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(message.format(tmp=tmp_path))
    assert not out.exists()
