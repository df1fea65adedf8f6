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
    with ``end_at``. Its state, the moved end included, is in ``state_dict()`` and in the optimizer's
    parameter groups, which a checkpoint holds."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.planned_steps = self.total_steps  # the latest an end may move to

    @property
    def past_peak(self) -> bool:
        """Whether the warm-up is over: the rate has reached its peak and anneals."""
        return self.last_epoch > self._schedule_phases[0]["end_step"]

    def end_at(self, total_steps: int) -> bool:
        """From the current step, anneal the rate (and beta1) from their present values to the
        schedule's final ones at ``total_steps``; whether the end moved. Ignored during the warm-up (an
        end moved then would anneal from a rate that never reached its peak: a VesselMNIST3D member
        whose end moved at its third epoch ended at val AUC 0.954 where members that reached the peak
        ended at 0.976-0.983), and unless it differs from the present end, is at least two steps ahead
        and is not past the planned end. An end moved later anneals more slowly from the present rate:
        the rate never rises again."""
        step = self.last_epoch
        if not self.past_peak or total_steps == self.total_steps or not step + 2 <= total_steps <= self.planned_steps:
            return False
        for group, rate in zip(self.optimizer.param_groups, self.get_last_lr(), strict=True):
            group["anchor_lr"] = rate
            if self.cycle_momentum:
                group["anchor_momentum"] = group["betas"][0] if self.use_beta1 else group["momentum"]
        done = [phase for phase in self._schedule_phases if phase["end_step"] < step]
        self._schedule_phases = [
            *done,
            {"end_step": float(step), "start_lr": "anchor_lr", "end_lr": "anchor_lr",  # the steps already made
             "start_momentum": "anchor_momentum", "end_momentum": "anchor_momentum"},
            # the final rate at the last step's end (torch's T - 1 would ask a short anneal for the
            # rate one step past its end, which the cosine brings back up)
            {"end_step": float(total_steps), "start_lr": "anchor_lr", "end_lr": "min_lr",
             "start_momentum": "anchor_momentum", "end_momentum": "max_momentum"},
        ]
        self.total_steps = total_steps
        return True


def recent_pace(epoch_seconds: list[float]) -> float | None:
    """Seconds per epoch: the median of the last ``RECENT`` epochs; None until ``EARLIEST`` are timed."""
    return statistics.median(epoch_seconds[-RECENT:]) if len(epoch_seconds) >= EARLIEST else None


def reachable_epochs(pace: float, seconds_left: float, done: int, end: int) -> int:
    """The epoch count a member can reach before its deadline: the ``done`` epochs plus those that fit
    in ``seconds_left`` at ``pace``, at least one more and at most ``end``."""
    return max(done + 1, min(end, done + int(seconds_left // pace)))
