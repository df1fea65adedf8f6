"""The one-cycle schedule whose end moves, and the loop that moves it: a member that will not reach
its planned end before the deadline anneals to the epoch it can still reach, and back out towards
the planned end when its pace improves."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from tasks.data.samples import InMemory
from tasks.model.config import TrainConfig
from tasks.train.loop import fit
from tasks.train.schedule import Cycle, reachable_epochs, recent_pace
from tests.train.test_train_loop import FAST, lesion_set

PEAK = 3e-3


def schedule(cls, total: int = 100) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    return optimizer, cls(optimizer, max_lr=PEAK, total_steps=total, pct_start=0.3)


def run(optimizer, scheduler, steps: int) -> list[tuple[float, float]]:
    """(rate, beta1) after each of ``steps`` steps."""
    seen = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        seen.append((scheduler.get_last_lr()[0], optimizer.param_groups[0]["betas"][0]))
    return seen


def test_unmoved_it_is_torchs_one_cycle():
    assert run(*schedule(Cycle), 99) == run(*schedule(torch.optim.lr_scheduler.OneCycleLR), 99)


@pytest.mark.parametrize("moved_at", [31, 50])  # just past the peak (step 29), and later
def test_moved_it_anneals_from_where_it_is_to_the_new_end(moved_at):
    optimizer, scheduler = schedule(Cycle)
    before = run(optimizer, scheduler, moved_at)
    scheduler.end_at(70)
    after = run(optimizer, scheduler, 70 - moved_at)
    rates = [before[-1][0]] + [rate for rate, _ in after]
    assert all(b < a for a, b in zip(rates, rates[1:], strict=False))  # down from the present rate, no jump up
    assert rates[1] > 0.9 * rates[0]  # and no jump down: one step of a steeper anneal
    assert after[-1][0] == pytest.approx(PEAK / 25 / 1e4)  # the final rate, at the new end
    assert after[-1][1] == pytest.approx(0.95)  # beta1 back at its maximum
    moved = scheduler.state_dict()  # a checkpoint holds the moved end
    optimizer2, resumed = schedule(Cycle)
    optimizer2.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(moved)
    assert resumed.total_steps == 70


def test_an_end_in_the_warm_up_or_unchanged_or_too_near_or_past_the_plan_is_ignored():
    optimizer, scheduler = schedule(Cycle)
    run(optimizer, scheduler, 20)
    assert not scheduler.past_peak
    assert not scheduler.end_at(60)
    assert scheduler.total_steps == 100
    run(optimizer, scheduler, 20)
    assert scheduler.past_peak
    for total in (100, 120, 41):
        assert not scheduler.end_at(total)
        assert scheduler.total_steps == 100


def test_an_end_moved_in_moves_back_out_without_the_rate_rising():
    optimizer, scheduler = schedule(Cycle)
    before = run(optimizer, scheduler, 40)
    assert scheduler.end_at(60)
    middle = run(optimizer, scheduler, 10)
    assert not scheduler.end_at(101)  # never past the planned end
    assert scheduler.end_at(100)
    after = run(optimizer, scheduler, 50)
    rates = [rate for rate, _ in before[29:] + middle + after]  # from the peak on
    assert all(b <= a for a, b in zip(rates, rates[1:], strict=False))
    assert after[0][0] > 0.95 * middle[-1][0]  # annealing slower from where it was, not restarting
    assert after[-1][0] == pytest.approx(PEAK / 25 / 1e4)  # fully annealed at the planned end


def test_an_end_that_moves_back_and_forth_keeps_the_cosine_going():
    """Moving the end by a step or two every step (a pace measured near the edge) must not hold the
    rate at the flat top of a restarted cosine: it keeps falling about as the unmoved schedule does."""
    plain, moved = schedule(Cycle), schedule(Cycle)
    run(*plain, 40), run(*moved, 40)
    for i in range(40):
        assert moved[1].end_at(98 + i % 3)
        run(*moved, 1)
    unmoved = run(*plain, 40)
    assert moved[1].get_last_lr()[0] < 1.1 * unmoved[-1][0]
    assert moved[1].get_last_lr()[0] < 0.5 * PEAK
    assert moved[1].end_at(100)
    rest = run(*moved, 20)
    assert rest[-1][0] == pytest.approx(PEAK / 25 / 1e4)


def test_the_pace_and_the_epochs_that_fit():
    assert recent_pace([9.0, 2.0]) is None  # the first epochs include warm-up
    assert recent_pace([9.0, 2.0, 2.2, 1.8, 2.0, 2.1]) == 2.0  # the median of the last five
    assert reachable_epochs(2.0, 9.0, done=5, end=40) == 9
    assert reachable_epochs(2.0, 1.0, done=5, end=40) == 6  # at least one more
    assert reachable_epochs(2.0, 900.0, done=5, end=40) == 40  # never later than planned


@pytest.fixture(scope="module")
def data():
    return InMemory(*lesion_set(64, 0)), InMemory(*lesion_set(32, 1))  # 2 steps an epoch: the sleep dominates


def test_a_member_that_cannot_make_its_end_anneals_to_one_it_can_and_resumes_to_it(data):
    """Each check sleeps a second, so an epoch costs a little over 1 s and 20 do not fit in 13 s; the
    end moves once the warm-up (6 epochs) is over."""
    config: TrainConfig = FAST.model_copy(update={"epochs": 20, "checks": 20})
    saved = {}

    def slow_check(epoch, metrics, checkpoint):
        saved[epoch] = checkpoint
        time.sleep(1.0)

    deadline = time.time() + 13
    result = fit(config, *data, num_classes=2, on_check=slow_check, deadline=deadline)
    assert result.stopped == "shortened"
    assert 6 < len(result.epochs_run) < 20
    assert min(saved[e]["end_epochs"] for e in range(5)) == 20  # not moved in the warm-up (its 12 steps)
    assert result.history[-1]["learning_rate"] < 0.01 * config.learning_rate  # annealed, not cut
    end = saved[result.epochs_run[-1]]["end_epochs"]
    assert end == len(result.epochs_run)
    rates = [h["learning_rate"] for h in result.history]
    assert rates[-1] == min(rates)
    # a member restarted after the end moved keeps the moved end and its schedule
    restart = next(e for e in sorted(saved) if saved[e]["end_epochs"] == end)
    resumed = fit(config, *data, num_classes=2, resume=saved[restart])
    assert resumed.stopped == "shortened" and resumed.epochs_run[-1] == end - 1
    assert np.isclose(resumed.history[-1]["learning_rate"], result.history[-1]["learning_rate"])


def test_a_member_whose_pace_improves_moves_its_end_back_out_to_the_plan(data):
    """The first seven checks sleep 2 s, later ones do not: at the slow pace 20 epochs do not fit in
    32 s, so the end moves in after the warm-up (6 epochs); once the pace is fast again it moves back
    out to the planned 20, which leave over 1 s for each fast epoch (a loaded machine's; in a 13 s
    version of this test, with 1 s sleeps, a make test on 2 busy cores ran out of time)."""
    config: TrainConfig = FAST.model_copy(update={"epochs": 20, "checks": 20})
    ends = {}

    def slow_start(epoch, metrics, checkpoint):
        ends[epoch] = checkpoint["end_epochs"]
        time.sleep(2.0 if epoch < 7 else 0.0)

    result = fit(config, *data, num_classes=2, on_check=slow_start, deadline=time.time() + 32)
    assert min(ends.values()) < 20  # it moved in
    assert result.stopped == "completed" and len(result.epochs_run) == 20  # and back out
    last = result.history[-1]  # each check records the end as it stood
    assert min(h["end_steps"] for h in result.history) < last["steps"] == last["end_steps"]
    assert result.history[-1]["learning_rate"] < 0.01 * config.learning_rate
