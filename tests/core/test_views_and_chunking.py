import ctypes
import warnings

import pytest
import torch

from saliscope.core import allocator
from saliscope.core.chunking import Chunker, image_rows
from saliscope.core.cost import CostMeter
from saliscope.core.views import FlatMapWarning, normalize, reduce_channels


def test_normalize_clips_at_the_percentile_and_keeps_zero_at_zero():
    m = torch.linspace(-1, 1, 101).view(1, 1, 1, 101).clone()
    m[..., -1] = 100.0  # one hot pixel must not wash out the rest
    out = normalize(m, percentile=99)
    assert out.max() == 1.0 and out.min() < -0.99
    assert abs(float(out[0, 0, 0, 50])) < 1e-6  # zero evidence stays zero
    assert 0.9 < float(out[0, 0, 0, 99]) <= 1.0


def test_unsigned_normalize_lands_in_unit_interval_and_flat_maps_warn():
    m = torch.rand(2, 1, 5, 5)
    out = normalize(m)
    assert out.min() >= 0 and out.max() == 1.0
    with pytest.warns(FlatMapWarning):
        flat = normalize(torch.zeros(1, 1, 4, 4))
    assert torch.equal(flat, torch.zeros(1, 1, 4, 4))


def test_sparse_map_survives_a_zero_percentile():
    m = torch.zeros(1, 1, 10, 10)
    m[0, 0, 3, 3] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(m)
    assert out[0, 0, 3, 3] == 1.0


def test_reduce_channels_keeps_sign_only_when_asked():
    a = torch.tensor([1.0, -3.0, 2.0]).view(1, 3, 1, 1)
    assert reduce_channels(a, "sum").item() == 0.0
    assert reduce_channels(a, "max-abs").item() == 3.0
    assert reduce_channels(a, "sum-abs").item() == 6.0


def test_chunker_measures_saved_bytes_once_and_sizes_chunks_from_the_budget():
    lin = torch.nn.Linear(1000, 1000)
    x = torch.randn(10, 1000, requires_grad=True)
    chunker = Chunker(memory_budget=3 * 4000)  # ~3 rows of the 4000-byte input that Linear saves
    spans = []
    for a, b in chunker.spans(10, key=("k",), device=x.device, params=lin.parameters):
        spans.append((a, b))
        lin(x[a:b]).sum()  # the work for this span runs inside the counting block on the first span
    assert spans[0] == (0, 1)
    assert [b - a for a, b in spans[1:]] == [3, 3, 3]
    assert chunker.rows_per_chunk(("k",), x.device) == 3
    # second plan for the same key: no probe row
    assert next(iter(chunker.spans(6, key=("k",), device=x.device))) == (0, 3)


def test_forward_only_work_gets_the_smaller_cpu_budget(monkeypatch):
    monkeypatch.delenv("SALISCOPE_MEMORY_BUDGET_MB", raising=False)
    cpu, row = torch.device("cpu"), 2**20  # a row costing 1 MiB
    chunker = Chunker()
    chunker.record(("backward",), row)
    chunker.record(("forward",), row)
    assert next(iter(chunker.spans(384 * 224, key=("backward",), device=cpu))) == (0, 384)
    assert next(iter(chunker.spans(384 * 224, key=("forward",), device=cpu, forward_only=True))) == (0, 224)
    assert chunker.rows_per_chunk(("forward",), cpu) == 224 and chunker.rows_per_chunk(("backward",), cpu) == 384
    assert Chunker(memory_budget=10 * row).rows_per_chunk(("forward",), cpu) is None  # unknown key: no plan
    pinned = Chunker(memory_budget=10 * row)
    pinned.record(("forward",), row)
    assert next(iter(pinned.spans(100, key=("forward",), device=cpu, forward_only=True))) == (0, 10)


def test_fixed_chunk_size_and_even_split():
    assert list(Chunker(chunk_size=4).spans(10, key=(), device=torch.device("cpu"))) == [(0, 4), (4, 8), (8, 10)]


def test_image_rows_is_one_row_view_for_a_one_image_chunk_and_the_gathered_rows_otherwise():
    t = torch.arange(3 * 2 * 4, dtype=torch.float32).view(3, 2, 4)
    one = image_rows(t, torch.tensor([1, 1, 1]))
    assert one.shape == (1, 2, 4) and one.data_ptr() == t[1].data_ptr()  # a view: nothing copied per row
    masks = torch.rand(3, 1, 4)
    torch.testing.assert_close(torch.lerp(one, one + 1, masks), torch.lerp(t[[1, 1, 1]], t[[1, 1, 1]] + 1, masks))
    mixed = image_rows(t, torch.tensor([0, 0, 2]))
    assert torch.equal(mixed, t[[0, 0, 2]])


def test_lerp_builds_a_perturbed_row_exactly_where_the_mask_is_0_or_1():
    g = torch.Generator().manual_seed(0)
    x, fill = torch.randn(1, 3, 16, 16, generator=g) * 3, torch.randn(1, 3, 16, 16, generator=g)
    mask = (torch.rand(8, 1, 16, 16, generator=g) > 0.5).float()
    built = torch.lerp(fill, x, mask)
    keep = mask.bool().expand_as(built)
    assert torch.equal(built[keep], x.expand_as(built)[keep])
    assert torch.equal(built[~keep], fill.expand_as(built)[~keep])


def test_cost_meter_counts_and_times():
    import gc

    # Garbage from earlier tests collected inside the block would lower the RSS below the meter's base and
    # hide the blob (the peak is measured against the RSS at entry): collect it first. The suite keeps freed
    # memory (core/allocator.py), and a blob served from pages the process already holds raises no RSS: hand
    # them back first, so the blob must take fresh ones.
    gc.collect()
    if allocator.keep_freed_memory():
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with CostMeter(torch.device("cpu")) as meter:
        meter.forward(4)
        meter.forward(4)
        meter.backward(8)
        blob = torch.ones(24 * 2**20)  # 96 MiB
        blob += 1
    assert meter.cost.forward_passes == 8 and meter.cost.batches == 2 and meter.cost.backward_passes == 8
    assert meter.cost.seconds > 0
    if meter.cost.peak_memory_bytes is not None:
        assert meter.cost.peak_memory_bytes >= 16 * 2**20
