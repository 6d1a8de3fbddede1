"""The helpers the suites share (benchmarks/suites/common.py): turn order, summaries over seeds, option parsing.

No timing is asserted: only the order of the calls and the arithmetic of the summaries.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.suites.common import RunContext, UsageError, interleaved, mean_sd, seed_list, tail_mean


def test_interleaved_cases_take_turns():
    calls: list[str] = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved(cases, 3, warmup=True)
    assert "".join(calls) == "abc" + "abc" + "cba" + "abc"  # the warm-up, then the order flips every round
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    calls.clear()
    interleaved(cases, 3, rotate=True)
    assert "".join(calls) == "abc" + "bca" + "cab"  # the next case goes first


def test_summaries_over_seeds():
    assert mean_sd([1.0, 3.0, None, math.nan]) == "2 ± 1.4"  # missing and non-finite values left out
    assert mean_sd([2.0]) == "2" and mean_sd([None]) == "n/a"
    assert tail_mean([float(v) for v in range(20)]) == 18.5  # the last tenth
    assert tail_mean([4.0]) == 4.0 and math.isnan(tail_mean([]))


def test_seed_list_reads_the_list_then_the_count_then_the_default(tmp_path):
    def ctx(seeds=None, **overrides):
        return RunContext(size="quick", seeds=seeds, device=torch.device("cpu"), out=tmp_path, command="",
                          overrides=overrides)

    assert seed_list(ctx(seeds=2, seed_list="3,5"), (0,)) == [3, 5]
    assert seed_list(ctx(seeds=2), (0,)) == [0, 1]
    assert seed_list(ctx(), (0, 1, 2)) == [0, 1, 2]
    with pytest.raises(UsageError, match="comma-separated integers"):
        seed_list(ctx(seed_list="1,x"), (0,))
