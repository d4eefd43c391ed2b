"""A rule-based spin check: a positive conclusion over a primary result that is not statistically significant.

Spin in the sense of Boutron et al. (JAMA 2010): the abstract's conclusions read as a success although the
primary outcome was not significant. The primary result is taken to be the first statistic reported in the
results (a p-value, else a 95 % confidence interval), which is what a reader skimming the abstract meets
first; secondary outcomes reported later do not change it. Rules, all in this file:

- p-values: "p = 0.23", "P<0.05", "p-value of 0.08", "(P = .04)", "p ≤ 0.001"; significant when the bound or
  value is below `alpha` ("p < 0.05" counts as significant at 0.05, "p = 0.05" does not);
- 95 % CIs: "95% CI 0.8-1.3", "(95% CI, 0.85 to 1.20)", "95% confidence interval -0.4 to 2.1"; not
  significant when the interval holds the null: 1 for ratios (odds/hazard/risk ratio, OR, HR, RR, IRR), 0 for
  differences (difference, change, beta, MD); with neither word, 1 if both bounds are positive, else 0;
- conclusions: the parts labelled CONCLUSION(S) (Label or NlmCategory), else the last two sentences;
- a conclusion is positive when a sentence has a positive claim ("improved", "effective", "significantly
  reduced", "beneficial"...) and no negation of it ("did not", "no significant", "failed to").
This is a screening rule, not a judgement: its precision on a hand-labelled sample is part of the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = r"[-−–]?\d*\.?\d+"
P_VALUE = re.compile(
    r"(?<![A-Za-z0-9])p(?:[\s-]*values?)?\s*(?:(?:was|were|is|of)\s+)?(?P<op>[<>=≤≥]|&lt;|&gt;)?\s*"
    r"(?P<val>\d*\.\d+|[01](?![\d.]))",
    re.IGNORECASE,
)
CI = re.compile(
    r"95\s*%\s*(?:CI|confidence interval)[\s,:=]*(?:\[|\()?\s*(?:of\s+|from\s+)?"
    rf"(?P<lo>{NUMBER})\s*(?:to|–|—|-|,|;)\s*(?P<hi>{NUMBER})",
    re.IGNORECASE,
)
RATIO = re.compile(r"\b(ratio|OR|HR|RR|IRR|aOR|aHR|relative risk)\b")
DIFFERENCE = re.compile(r"\b(difference|change|beta|β|MD|SMD|slope)\b", re.IGNORECASE)
POSITIVE = re.compile(
    r"\b(improv\w*|effective\w*|efficac\w*|benefi\w*|superior|protect\w*|significantly\s+\w+|"
    r"reduc\w*|enhanc\w*|promising|successful\w*|safe and|prevent\w*|associated with (?:better|lower|higher|"
    r"improved|reduced))\b",
    re.IGNORECASE,
)
NEGATION = re.compile(
    r"\b(no|not|nor|neither|failed to|did not|does not|do not|was not|were not|cannot|without|"
    r"no significant|not significant\w*|unlikely|insufficient|inconclusive)\b",
    re.IGNORECASE,
)
CONCLUSION_LABELS = re.compile(r"conclu|interpretation|implication|significance", re.IGNORECASE)


@dataclass
class Stat:
    kind: str  # "p" or "ci"
    text: str
    significant: bool | None  # None: cannot say ("p < 0.10" at alpha 0.05)


def _num(text: str) -> float:
    return float(text.replace("−", "-").replace("–", "-"))


def statistics(text: str, alpha: float = 0.05) -> list[Stat]:
    """The p-values and 95 % CIs in `text`, in reading order, each judged significant or not."""
    found = []
    for m in P_VALUE.finditer(text):
        value = float(m["val"])
        if not 0 <= value <= 1:
            continue
        op = {"&lt;": "<", "&gt;": ">", "≤": "<", "≥": ">"}.get(m["op"] or "=", m["op"] or "=")
        if op == "<":
            significant = True if value <= alpha else None
        elif op == ">":
            significant = False if value >= alpha else None
        else:
            significant = value < alpha
        found.append((m.start(), Stat("p", m.group(), significant)))
    for m in CI.finditer(text):
        lo, hi = sorted((_num(m["lo"]), _num(m["hi"])))
        before = text[max(0, m.start() - 60) : m.start()]
        if RATIO.search(before):
            null = 1.0
        elif DIFFERENCE.search(before):
            null = 0.0
        else:
            null = 1.0 if lo > 0 else 0.0
        found.append((m.start(), Stat("ci", m.group(), not (lo <= null <= hi))))
    return [s for _, s in sorted(found, key=lambda x: x[0])]


def primary_result(results: str, alpha: float = 0.05) -> Stat | None:
    """The first statistic of the results whose significance can be judged, else None."""
    for stat in statistics(results, alpha):
        if stat.significant is not None:
            return stat
    return None


def positive_sentence(sentence: str) -> bool:
    return bool(POSITIVE.search(sentence)) and not NEGATION.search(sentence)


def sections(abstract: str, labels: list[str], split) -> tuple[str, str]:
    """(results, conclusions) of an abstract whose parts are joined by newlines, `labels` per part.

    `split` splits text into sentences (corpus.split_sentences on one text). Unlabelled abstracts: the last
    two sentences are the conclusions, everything before them the results.
    """
    parts = abstract.split("\n")
    if len(labels) == len(parts) and any(CONCLUSION_LABELS.search(x or "") for x in labels):
        conclusions = " ".join(p for p, x in zip(parts, labels, strict=True) if CONCLUSION_LABELS.search(x or ""))
        results = " ".join(p for p, x in zip(parts, labels, strict=True) if not CONCLUSION_LABELS.search(x or ""))
        return results, conclusions
    sentences = split(abstract)
    return " ".join(sentences[:-2]), " ".join(sentences[-2:])


def judge(results: str, conclusions: str, alpha: float = 0.05, split=None) -> dict:
    """The spin verdict of one abstract: primary statistic, its significance, conclusion tone, spin flag."""
    sentences = split(conclusions) if split else re.split(r"(?<=[.!?])\s+", conclusions)
    primary = primary_result(results, alpha)
    positive = any(positive_sentence(s) for s in sentences if s.strip())
    return {
        "primary": primary.text if primary else None,
        "significant": primary.significant if primary else None,
        "positive_conclusion": positive,
        "spin": bool(positive and primary is not None and primary.significant is False),
    }
