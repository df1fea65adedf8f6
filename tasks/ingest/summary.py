"""What an ingest reports: counts only (no paths, no identifiers), for the CLI, the Prefect
artifact, the Delta commit's metadata and the pipeline."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from tasks.ingest.decode import Decoded
from tasks.ingest.labels import Plan
from tasks.ingest.reconcile import Outcome


class SplitAudit(BaseModel):
    """Patients per split in the whole dataset, and how many are in more than one (leakage)."""

    patients: int = 0
    patients_per_split: dict[str, int] = Field(default_factory=dict)
    patients_in_several_splits: int = 0


class IngestSummary(BaseModel):
    """One ingest's outcome: every input is added, unchanged or refused (by reason)."""

    version: int | None = Field(None, description="the dataset version after this ingest (None: still empty)")
    kind: str = Field("image2d", description="image2d: one image per file; volume3d: one volume per series")
    image_size: int = Field(0, description="the dataset's images are image_size x image_size (volumes: cubed)")
    image_size_note: str = Field("", description="how the image size was chosen, when the data chose it")
    inputs: int = 0
    added: int = 0
    unchanged: int = 0
    unchanged_not_read: int = Field(0, description="unchanged files known by their fingerprint, not read at all")
    replaced: int = Field(0, description="series already in the dataset whose files changed: row re-assembled and replaced")
    relabelled_not_applied: int = Field(0, description="already-ingested images whose CSV label changed (not rewritten)")
    rejected: int = 0
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    added_per_split: dict[str, int] = Field(default_factory=dict)
    dropped_from_series: dict[str, int] = Field(default_factory=dict, description="files of assembled series left out of "
                                                "their volume: localizer, non_image")
    audit: SplitAudit = Field(default_factory=SplitAudit)

    def markdown(self) -> str:
        """The Prefect artifact."""
        lines = ["# Ingest", "", "| | |", "|---|---|"]
        for name in ("version", "kind", "image_size", "inputs", "added", "replaced", "unchanged", "unchanged_not_read", "rejected"):
            lines.append(f"| {name} | {getattr(self, name)} |")
        lines += ["", "## Refused, by reason", "", "| reason | files |", "|---|---|"]
        lines += [f"| {r} | {n} |" for r, n in self.rejected_by_reason.items()]
        if self.dropped_from_series:
            lines += ["", "## Files left out of their series' volume", "", "| kind | files |", "|---|---|"]
            lines += [f"| {k} | {n} |" for k, n in self.dropped_from_series.items()]
        lines += ["", "## Patients per split (whole dataset)", "", "| split | patients |", "|---|---|"]
        lines += [f"| {s} | {n} |" for s, n in self.audit.patients_per_split.items()]
        lines += ["", f"Patients in more than one split: **{self.audit.patients_in_several_splits}**"]
        return "\n".join(lines)


def summarize(work: Plan, decoded: Decoded, outcome: Outcome) -> IngestSummary:
    """The counts of one ingest (its version and audit are filled in once it is published)."""
    reasons = Counter(r.reason for r in work.rejects) + Counter(r.reason for r in outcome.rejects)
    return IngestSummary(
        inputs=len(work.items) + len(work.rejects),
        added=len(outcome.keep) - outcome.replaced,
        unchanged=outcome.unchanged,
        unchanged_not_read=decoded.not_read,
        replaced=outcome.replaced,
        relabelled_not_applied=outcome.relabelled,
        rejected=sum(reasons.values()),
        rejected_by_reason={str(k): v for k, v in sorted(reasons.items())},
        added_per_split=dict(sorted(Counter(outcome.keep.values()).items())),
        dropped_from_series=dict(sorted(sum((r.dropped for r in decoded.results), Counter()).items())),
    )
