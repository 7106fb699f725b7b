"""Notebook 04's figures: entities highlighted in running text (HTML) and entity F1 per type (plotly)."""
from __future__ import annotations

import html

__all__ = ["ENTITY_COLORS", "highlight_html", "f1_figure"]

ENTITY_COLORS = {"PER": "#fde68a", "LOC": "#bbf7d0", "ORG": "#bfdbfe", "MISC": "#fbcfe8"}


def highlight_html(text, entities: list[dict]) -> str:
    """HTML of the words with each entity on a colored background and its type in small caps."""
    words = text.split() if isinstance(text, str) else list(text)
    parts, i = [], 0
    for ent in sorted(entities, key=lambda e: e["start"]):
        parts += [html.escape(w) for w in words[i:ent["start"]]]
        color = ENTITY_COLORS.get(ent["type"], "#e5e7eb")
        span = html.escape(" ".join(words[ent["start"]:ent["end"]]))
        parts.append(f'<mark style="background:{color};padding:0 4px;border-radius:4px">{span} '
                     f'<sub style="font-size:70%;font-weight:bold">{html.escape(ent["type"])}</sub></mark>')
        i = ent["end"]
    parts += [html.escape(w) for w in words[i:]]
    return '<p style="line-height:2">' + " ".join(parts) + "</p>"


def f1_figure(results: dict[str, dict], title: str = "entity F1 per type"):
    """Grouped bars: per-type and micro F1 for each split in ``results`` (``{'dev': evaluate_ner(...), ...}``)."""
    import plotly.graph_objects as go
    fig = go.Figure()
    for split, r in results.items():
        types = sorted(r["per_type"])
        fig.add_bar(name=split, x=types + ["micro"], y=[r["per_type"][t]["f1"] for t in types] + [r["f1"]],
                    text=[f"{r['per_type'][t]['f1']:.2f}" for t in types] + [f"{r['f1']:.2f}"])
    fig.update_layout(title=title, barmode="group", yaxis=dict(title="F1", range=[0, 1.05]), height=360)
    return fig
