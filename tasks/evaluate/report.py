"""The evaluation report: PNG plots and one self-contained HTML page (plots embedded), plus the
Markdown table shown as a Prefect artifact."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402

from tasks.model.ensemble import EnsembleSpec  # noqa: E402

HEADLINE = ("auc", "accuracy_at_op", "balanced_accuracy_at_op", "sensitivity_at_op", "specificity_at_op",
            "f1_at_op", "accuracy_at_0.5", "sensitivity_at_0.5", "specificity_at_0.5", "brier", "ece")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def roc_plot(band: dict, members: dict[str, dict], title: str) -> bytes:
    """The ensemble's ROC with its bootstrap 95% band, members' curves behind it."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in members.items():
        ax.plot(curve["fpr"], curve["tpr"], lw=0.8, alpha=0.5, label=name)
    ax.fill_between(band["grid"], band["low"], band["high"], color="C3", alpha=0.2, label="ensemble 95% CI")
    ax.plot(band["fpr"], band["tpr"], color="C3", lw=2, label="ensemble")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def confusion_plot(cm: list[list[float]], classes: list[str], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(4, 4))
    values = np.asarray(cm)
    ax.imshow(values, cmap="Blues")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:g}", ha="center", va="center", color="white" if v > values.max() / 2 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    return _png(fig)


def reliability_plot(probs: np.ndarray, labels: np.ndarray, positive: int, title: str, bins: int = 10) -> bytes:
    """Observed frequency of the positive class (binary) or of the top class being right (multi-class)."""
    if probs.shape[1] == 2:
        y, p = labels == positive, probs[:, positive]
    else:
        y, p = probs.argmax(axis=1) == labels, probs.max(axis=1)
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfectly calibrated")
    ax.plot(predicted, observed, "o-", color="C0", label="ensemble")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def curves_plot(records: list) -> bytes:
    """Training loss and validation AUC at each validation check, by optimizer step, one line per member."""
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for record in records:
        steps = [h.get("steps", h["epoch"] + 1) for h in record.history]
        label = f"{record.name} ({record.architecture})"
        loss_ax.plot(steps, [h["train_loss"] for h in record.history], marker=".", label=label)
        auc_ax.plot(steps, [h["val_auc"] for h in record.history], marker=".", label=label)
    for ax in (loss_ax, auc_ax):
        ax.set_xlabel("optimizer step")
    loss_ax.set(ylabel="training loss", title="training loss")
    auc_ax.set(ylabel="validation AUC", title="validation AUC (all workers)")
    auc_ax.legend(fontsize=8)
    return _png(fig)


def montage_plot(volumes: list[np.ndarray], captions: list[str], title: str) -> bytes:
    """Each volume's middle slice in three planes (axial, coronal, sagittal), one row per volume."""
    fig, axes = plt.subplots(len(volumes), 3, figsize=(6, 2.1 * len(volumes)), squeeze=False)
    for row, (volume, caption) in enumerate(zip(volumes, captions, strict=True)):
        d, h, w = (s // 2 for s in volume.shape)
        for col, (plane, name) in enumerate(((volume[d], "axial"), (volume[:, h, :], "coronal"), (volume[:, :, w], "sagittal"))):
            ax = axes[row][col]
            ax.imshow(plane, cmap="gray", vmin=0, vmax=255, origin="lower" if col else "upper")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{caption}\n{name}" if col == 0 else name, fontsize=8, loc="left" if col == 0 else "center")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def table_rows(results: dict, split: str) -> list[list[str]]:
    """One row per model (ensemble first): each headline metric with its 95% CI."""
    rows = []
    for name, by_split in results.items():
        scored = by_split[split]
        rows.append([name] + [fmt(scored["point"].get(m), scored["ci"].get(m)) for m in HEADLINE])
    return rows


def test_time_views(metrics_doc: dict) -> str:
    """The test-time views evaluation chose, in words."""
    tta = metrics_doc.get("tta", {})
    chosen = [name for name, on in (("its left-right flip", tta.get("hflip")),
                                    (f"its centre zoom x{tta.get('zoom')}", tta.get("zoom"))) if on]
    return "members averaged over the image" + "".join(f" and {name}" for name in chosen)


def markdown(metrics_doc: dict, report_uri: str) -> str:
    lines = [f"# Evaluation of {metrics_doc['run_name']}", "",
             f"Ensemble: **{metrics_doc['ensemble']['combiner']}**, {EnsembleSpec.model_validate(metrics_doc['ensemble']).calibration()}, "
             f"operating point {metrics_doc['ensemble']['threshold']:.3f} on p({metrics_doc['classes'][metrics_doc['positive']]}), "
             f"{test_time_views(metrics_doc)} (chosen on validation).", ""]
    for split in ("test", "val"):
        lines += [f"## {split} (95% patient-level bootstrap CIs)", "", "| model | " + " | ".join(HEADLINE) + " |",
                  "|---" * (len(HEADLINE) + 1) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(metrics_doc["results"], split)]
        lines.append("")
    lines.append(f"Full report: {report_uri}")
    return "\n".join(lines)


def data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def plots_markdown(plots: dict[str, bytes]) -> str:
    """The report's plots inlined as data URIs: a Markdown artifact the Prefect UI shows as images."""
    return "\n\n".join(f"**{name.removesuffix('.png').replace('_', ' ')}**\n\n![{name}]({data_uri(png)})"
                       for name, png in plots.items())


def html_page(metrics_doc: dict, plots: dict[str, bytes]) -> str:
    """A self-contained page: the tables, the plots inlined as data URIs, the lineage."""
    def table(split: str) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ("model", *HEADLINE))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in table_rows(metrics_doc["results"], split))
        return f"<table><tr>{head}</tr>{body}</table>"

    images = "".join(f'<figure><img src="{data_uri(png)}" alt="{html.escape(name)}">'
                     f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, png in plots.items())
    ens = metrics_doc["ensemble"]
    sizes = metrics_doc["sizes"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>medflow report: {html.escape(metrics_doc['run_name'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}figure{{display:inline-block;margin:8px}}img{{max-width:540px}}</style>
</head><body><h1>medflow evaluation: {html.escape(metrics_doc['run_name'])}</h1>
<p>Classes {html.escape(str(metrics_doc['classes']))}; positive class <b>{html.escape(metrics_doc['classes'][metrics_doc['positive']])}</b>.
Ensemble combiner <b>{html.escape(ens['combiner'])}</b>
(validation AUC of the candidates: {html.escape(str(metrics_doc['combiner_val_auc']))};
the simplest within combiner_noise_se standard errors of the best),
{html.escape(EnsembleSpec.model_validate(ens).calibration())}, operating point {ens['threshold']:.3f},
{html.escape(test_time_views(metrics_doc))} — all chosen on validation.</p>
<p>Validation: {sizes['val']['images']} images of {sizes['val']['patients']} patients; test: {sizes['test']['images']} images of
{sizes['test']['patients']} patients. 95% CIs from {metrics_doc['bootstrap_resamples']} patient-level bootstrap resamples.</p>
<h2>Test</h2>{table('test')}<h2>Validation</h2>{table('val')}<h2>Plots</h2>{images}
<h2>Lineage</h2><pre>{html.escape(metrics_doc['lineage_text'])}</pre></body></html>"""
