"""reBEN's device step on the CPU: equal to the device (GPU) path, recycled outputs never aliased."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from spml_rs.data.benv2_bands import _CPU_OUTPUTS, BAND_SETS, INTERPOLATIONS, BandLayout
from spml_rs.data.recycled import RecycledArrays


def packed_batch(layout: BandLayout, size: int, seed: int = 0) -> torch.Tensor:
    """(size, nbytes) packed patches: uint16 DNs up to 20,000, S1 float32 dB around -15."""
    rng = np.random.default_rng(seed)
    buffer = np.empty((size, layout.nbytes), dtype=np.uint8)
    for seg in layout.segments:
        count = seg.nbytes // np.dtype(seg.dtype).itemsize
        if seg.dtype == "uint16":
            values = rng.integers(0, 20_000, (size, count)).astype(np.uint16)
        else:
            values = rng.normal(-15.0, 5.0, (size, count)).astype(np.float32)
        buffer[:, seg.offset : seg.offset + seg.nbytes] = values.view(np.uint8)
    return torch.from_numpy(buffer)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("band_set", sorted(BAND_SETS))
@pytest.mark.parametrize("size", [1, 5])
def test_cpu_path_equals_the_device_path(band_set: str, interpolation: str, size: int) -> None:
    layout = BandLayout(band_set, interpolation)
    batch = packed_batch(layout, size)
    for normalize in (True, False):
        fast = layout._decode_cpu(batch, normalize)
        device = layout._decode_device(batch, normalize)  # the GPU code, run on the CPU
        assert fast.shape == device.shape == (size, layout.in_chans, 120, 120)
        if interpolation == "nearest" or not normalize:
            # nearest: the same float32 operations; bilinear unnormalised: the same interpolate
            assert torch.equal(fast, device)
        else:
            # standardised before interpolating instead of after: the same linear map, rounded
            # differently
            torch.testing.assert_close(fast, device, rtol=1e-5, atol=1e-5)


def test_normalize_takes_the_cpu_path_on_cpu_tensors() -> None:
    layout = BandLayout("s2", "nearest")
    batch = packed_batch(layout, 3)
    out = layout.normalize(batch)
    pointer = out.data_ptr()
    assert torch.equal(out, layout._decode_device(batch, True))
    del out
    reused = _CPU_OUTPUTS.reused
    assert layout.normalize(batch).data_ptr() == pointer  # recycled: the CPU path's output
    assert _CPU_OUTPUTS.reused == reused + 1


def test_a_batch_still_in_use_is_never_overwritten() -> None:
    layout = BandLayout("s2_all", "nearest")
    first_input, second_input = packed_batch(layout, 4, seed=1), packed_batch(layout, 4, seed=2)
    first = layout.normalize(first_input)
    kept = first[:, :3]  # a view keeps the memory in use even when `first` is gone
    expected = kept.clone()
    del first
    second = layout.normalize(second_input)
    third = layout.normalize(second_input)
    assert torch.equal(kept, expected)
    assert kept.data_ptr() not in (second.data_ptr(), third.data_ptr())
    assert second.data_ptr() != third.data_ptr()
    assert torch.equal(second, third)


def test_recycled_arrays_reuse_only_free_memory() -> None:
    pool = RecycledArrays(shapes=2, per_shape=2)
    first = pool.empty((2, 3))
    pointer = first.data_ptr()
    del first
    again = pool.empty((2, 3))
    assert again.data_ptr() == pointer and (pool.allocated, pool.reused) == (1, 1)
    held = again.numpy()  # a numpy view of the tensor keeps it in use too
    del again
    other = pool.empty((2, 3))
    assert other.data_ptr() != pointer and pool.allocated == 2
    held[:] = 7.0
    second = other.data_ptr()
    del other
    in_use = pool.empty((2, 3))
    assert in_use.data_ptr() == second  # the second base came free, the first is still held
    del held
    assert pool.empty((2, 3)).data_ptr() == pointer  # now the first is free again
    assert (pool.allocated, pool.reused) == (2, 3)


def test_recycled_arrays_keep_a_few_shapes_only() -> None:
    pool = RecycledArrays(shapes=2, per_shape=1)
    for rows in (1, 2, 3):
        pool.empty((rows, 4))
    assert list(pool._pool) == [(2, 4), (3, 4)]
    pool.empty((1, 4))
    assert pool.reused == 0  # (1, 4) was dropped: allocated anew


def test_recycled_arrays_never_hand_one_base_to_two_threads() -> None:
    pool = RecycledArrays(shapes=1, per_shape=2)
    pointers: list[int] = []
    held: list[torch.Tensor] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(200):
            tensor = pool.empty((8, 8))
            with lock:
                assert all(t.data_ptr() != tensor.data_ptr() for t in held)
                held.append(tensor)
                pointers.append(tensor.data_ptr())
            with lock:
                held.remove(tensor)
            del tensor

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pointers) == 800 and pool.reused > 0
