"""The learning-rate schedule of a member: torch's one-cycle schedule, whose end can be brought
forward when the member will not reach its planned end before the budget's deadline. The rate then
anneals from where it is to the step that the member can still reach. Without this, the deadline
cut the member while its rate was still high. When the member's pace improves (a member beside it
finished, a slow start is over) the end moves back out again, never past the planned one: a
VesselMNIST3D member brought forward from 8022 to 6636 steps by its slow first epochs finished 268 s
before its deadline with its validation AUC still rising."""

from __future__ import annotations

import statistics

from torch.optim.lr_scheduler import OneCycleLR

RECENT = 5  # epochs whose median duration is the member's pace
EARLIEST = 3  # epoch durations measured before the end may move: the first ones include warm-up


class Cycle(OneCycleLR):
    """``OneCycleLR`` (warm-up to the peak, cosine to nearly zero; AdamW's beta1 cycled against it)
    with ``end_at``. Its state, the moved end included, is in ``state_dict()``, which a checkpoint holds."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.planned_steps = self.total_steps  # the latest an end may move to

    @property
    def past_peak(self) -> bool:
        """Whether the warm-up is over: the rate has reached its peak and anneals."""
        return self.last_epoch > self._schedule_phases[0]["end_step"]

    def end_at(self, total_steps: int) -> bool:
        """Make the cosine reach the schedule's final rate (and beta1) at ``total_steps``, going on from
        the fraction of the anneal already made: the rest of the curve is squeezed or stretched, the
        present rate is kept, and the rate never rises. Whether the end moved. Ignored during the
        warm-up (an end moved then would anneal from a rate that never reached its peak: a VesselMNIST3D
        member whose end moved at its third epoch ended at val AUC 0.954 where members that reached the
        peak ended at 0.976-0.983), and unless it differs from the present end, is at least two steps
        ahead and is not past the planned end.

        Keeping the fraction matters when the end moves often: restarting the cosine from the present
        rate at each move (the first version) restarts it where it is flat: in a VesselMNIST3D run whose
        members' ends had moved, their rates were still 97% of the peak where the unmoved cosine is at 70%."""
        step = self.last_epoch
        *done, before, anneal = self._schedule_phases
        made = (step - before["end_step"]) / (anneal["end_step"] - before["end_step"])  # of the anneal
        if not self.past_peak or total_steps == self.total_steps or made >= 1 or \
                not step + 2 <= total_steps <= self.planned_steps:
            return False
        # the anneal's start moved so that ``step`` is the same fraction of the way to the new end; the
        # final rate at the last step's end (torch's T - 1 would ask a short anneal for the rate one step
        # past its end, which the cosine brings back up)
        start = (step - made * total_steps) / (1 - made)
        self._schedule_phases = [*done, {**before, "end_step": start}, {**anneal, "end_step": float(total_steps)}]
        self.total_steps = total_steps
        return True


def recent_pace(epoch_seconds: list[float]) -> float | None:
    """Seconds per epoch: the median of the last ``RECENT`` epochs; None until ``EARLIEST`` are timed."""
    return statistics.median(epoch_seconds[-RECENT:]) if len(epoch_seconds) >= EARLIEST else None


def reachable_epochs(pace: float, seconds_left: float, done: int, end: int) -> int:
    """The epoch count a member can reach before its deadline: the ``done`` epochs plus those that fit
    in ``seconds_left`` at ``pace``, at least one more and at most ``end``."""
    return max(done + 1, min(end, done + int(seconds_left // pace)))
