"""Matplotlib figures the notebooks draw more than once."""

from __future__ import annotations

import matplotlib.pyplot as plt


def plot_token_probabilities(tokens: list[str], probs: list[float], title: str = "", ax=None):
    """Horizontal bars of the most likely next tokens, most likely on top."""
    ax = ax or plt.subplots(figsize=(6, 0.35 * len(tokens) + 1))[1]
    ax.barh([repr(t) for t in tokens][::-1], list(probs)[::-1], color="tab:blue")
    ax.set_xlabel("probability")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    for y, p in enumerate(list(probs)[::-1]):
        ax.text(p + 0.01, y, f"{p:.3f}", va="center", fontsize=8)
    return ax


def plot_loss_curves(history: list[dict], evals: list[dict] | None = None, title: str = "", ax=None, label: str = ""):
    """Training loss per optimizer step, with the evaluation loss as dots where it was measured."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label=f"{label} train".strip(), alpha=0.8)
    if evals:
        ax.plot(
            [e["step"] for e in evals],
            [e["eval_loss"] for e in evals],
            "o-",
            label=f"{label} eval (held-out people)".strip(),
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per target token (nats)")
    ax.set_title(title)
    ax.legend()
    return ax


def plot_accuracy_bars(
    labels: list[str],
    values: list[float],
    title: str = "",
    ax=None,
    ylabel: str = "accuracy",
    colors: str | list[str] = "tab:green",
):
    """Vertical bars with the value written on top, for comparing a few runs or attributes."""
    ax = ax or plt.subplots(figsize=(1.2 * len(labels) + 2, 3.5))[1]
    bars = ax.bar(labels, values, color=colors)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.02, f"{v:.2f}", ha="center", fontsize=9)
    return ax
