"""``saliscope app``: what it serves and where, and its one-line errors (no Gradio, a taken port, bad options)."""

from __future__ import annotations

import socket
import sys

import pytest
import torch
from click.testing import CliRunner
from optional import require_gradio

import saliscope.app
import saliscope.models
from saliscope.cli.main import cli


@pytest.fixture
def model_file(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny, path)
    return path


def invoke(*args: object):
    return CliRunner().invoke(cli, ["app", "--trust-pickle", *(str(a) for a in args)])


def test_without_gradio_one_line_names_the_extra_and_nothing_loads(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # what `import gradio` meets when it is not installed

    def no_model(*_a, **_k):
        raise AssertionError("the model must not load when the app cannot start")

    monkeypatch.setattr(saliscope.models, "load_model", no_model)
    result = invoke()
    assert result.exit_code == 2
    assert result.stderr == 'error: the explorer needs Gradio, which is not installed — pip install -e ".[app]"\n'
    assert result.stdout == ""


def test_it_serves_this_machine_only_by_default_with_the_settings_given(monkeypatch, model_file) -> None:
    require_gradio()
    seen = {}

    def fake_launch(explorer, *, host, port, block, quiet):
        seen.update(explorer=explorer, host=host, port=port, block=block)

    monkeypatch.setattr(saliscope.app, "launch", fake_launch)
    result = invoke("--model", model_file, "--methods", "gradcam,ig", "--checks", "map,deletion", "--n-steps", 7)
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 7860 and seen["block"] is True
    settings = seen["explorer"].settings
    assert settings.methods == ("gradcam", "integrated-gradients") and settings.checks == ("map", "deletion")
    assert settings.options.n_steps == 7 and seen["explorer"].model_name == str(model_file)
    assert result.stdout == "saliscope explorer: http://127.0.0.1:7860/  (Ctrl+C stops it)\n"

    invoke("--model", model_file, "--host", "0.0.0.0", "--port", 8080, "--checks", "none")
    assert seen["host"] == "0.0.0.0" and seen["port"] == 8080 and seen["explorer"].settings.checks == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checks", "map,speed"], "error: unknown check(s) in --checks 'map,speed' — use some of map, deletion"),
        (["--methods", "gradient,rollout"], "error: the method(s) attention-rollout cannot run on this model"),
        (["--methods", "gradiant"], "error: unknown method 'gradiant' — did you mean gradient"),
    ],
)
def test_bad_options_are_one_line_each(model_file, args, message) -> None:
    require_gradio()
    result = invoke("--model", model_file, *args)
    assert result.exit_code == 2 and result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1


def test_a_taken_port_is_one_line_naming_the_option(model_file) -> None:
    require_gradio()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("--model", model_file, "--port", port, "--checks", "none")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: cannot serve on 127.0.0.1:{port}: the port is taken, or the address is not one of this machine's"
        " — pass another --port, e.g. --port 7861, or stop what is using it\n"
    )
