"""A 30-second version of bench/chaos.py: streaming clients through ``byzerllm serve`` on an echo
deployment while a worker is killed every 10 s and the server is killed and started again once.
Afterwards every slot is free, nothing is queued, and every request is counted once: completed,
dropped by its client, or failed with a documented error."""

from __future__ import annotations

import sys

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.integration


def test_faults_under_load_leave_every_slot_free_and_every_request_counted(llm):
    sys.path.insert(0, str(ROOT / "bench"))
    from chaos import run_chaos

    result = run_chaos(llm, seconds=30, clients=16, kill_every=10)
    assert result["workers_killed"] >= 2 and result["server_restarts"] == 1
    assert result["completed"] > 50 and result["dropped_by_client"] > 0
    assert result["every_request_counted"], result
    assert result["undocumented_failures"] == {}, result
    assert result["all_slots_free"], result["stat_after"]
