"""The ring all-reduce cost model (npgpt/allocation/network.py): its formula's limits, the fit that
recovers alpha and beta, the step prediction, and bad input."""
import numpy as np
import pytest

from npgpt.allocation.network import (
    NETWORKS,
    Network,
    allgather_seconds,
    allreduce_seconds,
    fit_network,
    predict_step,
)

NET = Network("test", latency_s=10e-6, bandwidth=1e9)


def test_one_rank_talks_to_nobody_and_two_ranks_pay_two_latencies_and_one_buffer():
    assert allreduce_seconds(1e6, 1, NET) == 0.0
    assert allreduce_seconds(1e6, 2, NET) == pytest.approx(2 * 10e-6 + 1e6 / 1e9, rel=1e-12)
    assert allgather_seconds(1e6, 2, NET) == pytest.approx(10e-6 + 0.5e6 / 1e9, rel=1e-12)


def test_the_bytes_term_approaches_twice_the_buffer_and_the_latency_term_grows_linearly():
    bandwidth_only = Network("no latency", 0.0, 1e9)
    times = [allreduce_seconds(1e9, p, bandwidth_only) for p in (2, 8, 64, 512, 4096)]
    assert np.all(np.diff(times) > 0) and times[-1] < 2.0 and times[-1] == pytest.approx(2.0, rel=1e-3)
    latency_only = Network("no bandwidth cost", 1e-6, 1e30)
    assert allreduce_seconds(1.0, 513, latency_only, messages=3) == pytest.approx(2 * 512 * 3e-6, rel=1e-9)


def test_the_fit_recovers_latency_and_bandwidth_from_the_formula():
    sizes = np.logspace(3, 8, 11)
    for ranks in (2, 4):
        seconds = [allreduce_seconds(n, ranks, NET) for n in sizes]
        fitted = fit_network(sizes, seconds, ranks)
        assert fitted.latency_s == pytest.approx(NET.latency_s, rel=1e-9)
        assert fitted.bandwidth == pytest.approx(NET.bandwidth, rel=1e-9)


def test_a_step_adds_the_all_reduce_and_under_zero_1_the_all_gather():
    plain = predict_step(0.1, 4e8, 64, NETWORKS["10GbE"], messages=100)
    zero = predict_step(0.1, 4e8, 64, NETWORKS["10GbE"], messages=100, zero=1)
    assert plain["step_s"] == pytest.approx(0.1 + allreduce_seconds(4e8, 64, NETWORKS["10GbE"], 100))
    assert zero["communication_s"] == pytest.approx(1.5 * plain["communication_s"], rel=1e-12)
    assert 0 < zero["efficiency"] < plain["efficiency"] < 1


@pytest.mark.parametrize("call, match", [
    (lambda: allreduce_seconds(-1, 2, NET), "n_bytes"),
    (lambda: allreduce_seconds(10, 0, NET), "ranks"),
    (lambda: Network("x", 1e-6, 0.0), "bandwidth"),
    (lambda: fit_network([1, 2], [1.0], 2), "equal-length"),
    (lambda: fit_network([1, 2, 3], [1.0, float("nan"), 2.0], 2), "positive and finite"),
    (lambda: fit_network([1, 2, 3], [3.0, 2.0, 1.0], 2), "do not grow"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
