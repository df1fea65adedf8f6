"""Champion/challenger: promote a run's model through the statistical gate, promote by hand, roll back."""

from __future__ import annotations

from pydantic import Field

from tasks.core import provenance, storage
from tasks.data.samples import Streamed
from tasks.model import runs
from tasks.model.folders import RunFolder
from tasks.model.store import EnsembleModel
from tasks.serve import model_registry as registry
from tasks.serve.model_registry import Evidence, Pointer, RegistryError


class PromotionDecision(Evidence):
    """A promotion decision and its evidence: stored beside the model, in the pointer, in the Prefect UI."""

    task: str
    registry: str
    challenger: str = Field(description="the challenger's model folder")
    dataset_version: int
    champion_before: str | None = None
    champion_after: str | None = None
    promoted: bool = Field(False, description="whether the challenger is the champion because of this decision")

    def markdown(self) -> str:
        lines = [f"# Promotion: task `{self.task}`", "",
                 f"**{'promoted' if self.promoted else 'not promoted'}** — {self.reason}", "", "| | |", "|---|---|"]
        for key in ("challenger", "champion_before", "champion_after", "challenger_auc", "champion_auc", "delta_auc",
                    "delta_ci95", "margin", "images", "patients", "dataset_version"):
            if getattr(self, key) is not None:
                lines.append(f"| {key} | {getattr(self, key)} |")
        return "\n".join(lines)


def promote_run(registry_uri: str, task: str, run_uri: str, margin: float = 0.0, resamples: int = 1000,
                force: bool = False) -> PromotionDecision:
    """Promote ``run_uri``'s model if it beats the champion on the run's validation data (or if
    ``force``); the decision and evidence go to ``RUN_URI/promotion.json``. Returns the decision."""
    info = runs.load(run_uri).info
    model_uri = info.folder.model.uri
    challenger = EnsembleModel.load(model_uri)
    val = Streamed(info.dataset, "val", info.classes, info.version, patients=True)
    decision: dict = {"task": task, "registry": registry_uri, "challenger": model_uri, "dataset_version": info.version}

    def decide(current: Pointer | None) -> Pointer | None:
        decision["champion_before"] = current.model if current else None
        if current is not None and current.model == model_uri:
            evidence = Evidence(promote=False, reason="this model is already the champion")
        elif force:
            evidence = Evidence(promote=True, reason="manual promotion (no gate)")
        elif current is None:
            evidence = Evidence(promote=True, reason="no champion yet")
        else:
            evidence = registry.paired_auc_gate(challenger, EnsembleModel.load(current.model), val, margin, resamples)
        decision.update(evidence.model_dump(exclude_none=True))
        if not evidence.promote:
            return None
        return Pointer(seq=0, task=task, model=model_uri, action="manual" if force else "promote",
                       decided_at=provenance.utc_now(), replaces=current.seq if current else None, evidence=dict(decision))

    after = registry.publish(registry_uri, task, decide)
    decision["champion_after"] = after.model if after else None
    decision["promoted"] = bool(after and after.model == model_uri and decision["promote"])
    result = PromotionDecision.model_validate(decision)
    storage.write_json(RunFolder(run_uri).promotion, result.model_dump(mode="json"))  # beside the model
    return result


def rollback(registry_uri: str, task: str) -> Pointer:
    """Make the model that the current champion displaced the champion again."""
    entries = {p.seq: p for p in registry.history(registry_uri, task)}

    def decide(current: Pointer | None) -> Pointer:
        if current is None or current.replaces is None:
            raise RegistryError(f"task {task!r} has no earlier champion to roll back to")
        target = entries.get(current.replaces) or {p.seq: p for p in registry.history(registry_uri, task)}[current.replaces]
        return Pointer(seq=0, task=task, model=target.model, action="rollback", decided_at=provenance.utc_now(),
                       replaces=target.replaces, evidence={"rolled_back_from": current.model})

    return registry.publish(registry_uri, task, decide)
