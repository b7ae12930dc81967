"""The explorer's server, without a browser: it opens no path a request names, and two clients at once each
get the results of their own photo."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest
import torch
from serving import QUIET_GRADIO, served

from saliscope.app import AppSettings, Explorer
from saliscope.registry import MethodOptions
from saliscope.trust import Thresholds

pytestmark = QUIET_GRADIO

SETTINGS = AppSettings(
    methods=("gradient", "gradcam"),
    options=MethodOptions(n_steps=4),
    checks=("map",),
    thresholds=Thresholds(deletion_steps=6, deletion_random_maps=1),
)


@pytest.fixture(scope="module")
def server(tiny) -> Iterator[tuple[Explorer, str]]:
    explorer = Explorer(tiny, SETTINGS)
    with served(explorer) as url:
        yield explorer, url


def call(url: str, endpoint: str, data: list) -> list[tuple[str, str]]:
    """Gradio's HTTP API: post the inputs, then read the event stream; returns its (event, data) pairs."""
    request = urllib.request.Request(
        f"{url}gradio_api/call/{endpoint}",
        data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )
    event = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    text = urllib.request.urlopen(f"{url}gradio_api/call/{endpoint}/{event}", timeout=300).read().decode()
    pairs, kind = [], ""
    for line in text.splitlines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            pairs.append((kind, line[6:]))
    return pairs


def test_a_request_naming_a_server_file_is_refused_before_any_handler_runs(server, monkeypatch) -> None:
    explorer, url = server
    opened = []
    real = explorer.open
    monkeypatch.setattr(explorer, "open", lambda *a: opened.append(a) or real(*a))
    secret = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    events = call(url, "explain", [secret, None, ["gradient"], "default", 0.8])
    assert events[-1][0] == "error"
    assert opened == []  # the handler never saw the request
    with open("/etc/hostname") as f:
        assert all(f.read().strip() not in data for _, data in events)


def test_two_clients_at_once_each_get_the_numbers_of_their_own_photo(server) -> None:
    explorer, url = server
    expected = {}
    for sample in ("chelsea", "rocket"):
        session = explorer.open(None, sample)
        expected[sample] = {f"{p.label} ({p.index})": p.probability for p in session.top}
    assert expected["chelsea"] != expected["rocket"]

    results: dict[str, list] = {}

    def client(sample: str) -> None:
        results[sample] = call(url, "explain", [None, sample, ["gradient", "gradcam"], "default", 0.8])

    threads = [threading.Thread(target=client, args=(s,)) for s in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for sample, events in results.items():
        assert events[-1][0] == "complete", events[-1]
        outputs = [json.loads(data) for kind, data in events if kind in ("generating", "complete")]
        labels = next(o[1] for o in outputs if o[1] and isinstance(o[1], dict))
        got = {c["label"]: c["confidence"] for c in labels["confidences"]}
        assert got == pytest.approx(expected[sample]), sample
        final = outputs[-1]
        assert "Maps of" in final[0] and "checked" in final[0]
        maps = next(o[3] for o in reversed(outputs) if isinstance(o[3], str) and "ss-card" in o[3])
        top = max(expected[sample], key=expected[sample].get)
        assert f"map of {top.rsplit(' (', 1)[0]} over the photo" in maps


def test_the_model_is_left_as_found_after_serving(server, tiny) -> None:
    _, url = server
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    call(url, "explain", [None, "coffee", ["gradient", "gradcam"], "signed", 0.5])
    assert not tiny.training and all(p.requires_grad for p in tiny.parameters())
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
