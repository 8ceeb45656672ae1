"""The learned gate: a logistic regression over signal scores and question features.

It predicts the probability that the fast answer is wrong. Fitted on labelled benchmark
output (`dualmem calibrate --fit`) with folds by conversation, so the reported AUROC is for
conversations the model did not see. The file it saves names its features: a model made for
other features refuses to load instead of scoring garbage.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...errors import ConfigError, InvalidInputError
from ...types import SignalResult
from .calibrate import json_lines
from .evidence import question_shape

__all__ = [
    "FEATURES",
    "FitReport",
    "GateModel",
    "auroc",
    "bootstrap_interval",
    "features",
    "fit",
    "format_fit",
    "load_labelled",
    "load_model",
    "risk_coverage",
]

# every feature `features` can produce; a model naming another one refuses to load
FEATURES: tuple[str, ...] = (
    "aggregation",
    "aggregation.dates",
    "aggregation.held",
    "aggregation.items",
    "aggregation.list",
    "aggregation.repeated",
    "consistency",
    "consistency.agreement",
    "consistency.grounding",
    "consistency.refusal",
    "coverage",
    "coverage.dated",
    "coverage.entities",
    "coverage.similarity",
    "coverage.temporal",
    "coverage.terms",
    "entropy",
    "entropy.max",
    "entropy.mean",
    "entropy.tokens",
    "question.count",
    "question.list",
    "question.now",
    "question.polar",
    "question.temporal",
    "question.terms",
    "recency",
    "recency.gap_days",
    "recency.now",
    "sufficiency",
    "sufficiency.best_overlap",
    "sufficiency.best_rank",
    "sufficiency.dates",
    "sufficiency.margin",
    "sufficiency.names",
    "sufficiency.terms",
    "sufficiency.top1",
)
FORMAT = "dualmem.gate-model/1"

_ANSWER = ("entropy.mean", "entropy.max", "entropy.tokens")
# The candidate feature sets `fit` chooses among, by cross-validation. With ~200 labelled
# questions and ~50 right answers, a regression over all 40 features overfits (held-out
# AUROC 0.59 on LoCoMo dev against 0.69 for the answer's entropy and the question's shape).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "answer": _ANSWER,
    "answer+question": (*_ANSWER, "question.terms", "question.temporal", "question.list", "question.polar"),
    "answer+evidence": (
        *_ANSWER,
        "sufficiency",
        "sufficiency.best_overlap",
        "coverage",
        "consistency.grounding",
    ),
}  # and "all": every feature the records hold
PENALTIES = (3.0, 30.0)  # the L2 strengths `fit` chooses among


class GateModel(BaseModel):
    """Standardised logistic regression: P(wrong) = sigmoid(b + w . (x - mean) / scale)."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float = Field(0.5, description="escalate when P(wrong) >= threshold")
    fitted_on: str = ""

    def contributions(self, features: Mapping[str, float | None]) -> dict[str, float]:
        """Each feature's share of the log-odds, to say why a question escalated. A feature
        that is missing (a signal that was unavailable) sits at its mean and adds nothing."""
        x = _vector(features, self.features, self.mean)
        parts = np.array(self.weights) * (x - self.mean) / self.scale
        return dict(zip(self.features, map(float, parts), strict=True))

    def probability(self, features: Mapping[str, float | None]) -> float:
        """P(the fast answer is wrong)."""
        z = self.bias + sum(self.contributions(features).values())
        return float(1.0 / (1.0 + np.exp(-z)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: str | Path, expected: Sequence[str] | None = None) -> GateModel:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read gate model {path}: {e}") from e
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else None
            raise ConfigError(f"{path} is not a {FORMAT} file (format: {found!r})")
        model = cls.model_validate(raw)
        sizes = {len(model.mean), len(model.scale), len(model.weights)}
        if sizes != {len(model.features)}:
            raise ConfigError(f"{path}: {len(model.features)} features but vectors of sizes {sorted(sizes)}")
        unknown = sorted(set(model.features) - set(FEATURES if expected is None else expected))
        if unknown:
            raise ConfigError(
                f"{path} was fitted for other features (unknown here: {unknown}); refit it with "
                "`dualmem calibrate --fit` on benchmark output of this version"
            )
        return model

    @classmethod
    def default(cls) -> GateModel:
        """The model that ships with the package (see the README for the command that fit it)."""
        return cls.load(Path(str(resources.files("dualmem").joinpath("_assets/gate_model.json"))))


@functools.lru_cache(maxsize=8)
def load_model(path: str | None) -> GateModel:
    """The gate model at `path` (the packaged one for None), read once per process."""
    return GateModel.default() if path is None else GateModel.load(path)


def _vector(features: Mapping[str, float | None], names: Sequence[str], fill: Sequence[float]) -> np.ndarray:
    values = (features.get(n) for n in names)
    return np.array([f if v is None else float(v) for v, f in zip(values, fill, strict=True)])


def features(question: str, signals: Sequence[SignalResult]) -> dict[str, float | None]:
    """What the learned gate reads: each signal's score (None when unavailable) and numeric
    details, and the question's shape."""
    out: dict[str, float | None] = {f"question.{k}": v for k, v in question_shape(question).items()}
    for s in signals:
        out[s.name] = s.score if s.available else None
        for key, value in s.details.items():
            if isinstance(value, bool | int | float):
                out[f"{s.name}.{key}"] = float(value)
    return out


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Probability that a random positive scores higher than a random negative (ties count
    half): the Mann-Whitney statistic from average ranks. None when a class is empty."""
    n_pos = sum(positives)
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for r in range(i, j + 1):
            ranks[order[r]] = (i + j) / 2 + 1  # average 1-based rank of the tie group
        i = j + 1
    rank_sum = sum(r for r, p in zip(ranks, positives, strict=True) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_interval(
    scores: Sequence[float], positives: Sequence[bool], *, rounds: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile interval of the AUROC over questions resampled with replacement."""
    s, y = np.asarray(scores, dtype=float), np.asarray(positives, dtype=bool)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        i = rng.integers(0, len(s), len(s))
        a = auroc(s[i], y[i])
        if a is not None:
            values.append(a)
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class RiskRow:
    threshold: float
    escalation: float  # share of questions escalated
    caught: float  # share of wrong fast answers escalated
    right_escalated: float  # share of right fast answers escalated
    lift: float  # P(wrong | escalated) / P(wrong)


def risk_coverage(probabilities: Sequence[float], wrong: Sequence[bool], steps: int = 20) -> list[RiskRow]:
    """The trade-off of escalating every question whose P(wrong) is at least a threshold."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(wrong, dtype=bool)
    base = y.mean() if len(y) else 0.0
    rows = []
    for q in np.linspace(0, 1, steps + 1)[1:]:
        t = float(np.quantile(p, 1 - q))
        up = p >= t
        rows.append(
            RiskRow(
                threshold=t,
                escalation=float(up.mean()),
                caught=float(up[y].mean()) if y.any() else 0.0,
                right_escalated=float(up[~y].mean()) if (~y).any() else 0.0,
                lift=float(y[up].mean() / base) if up.any() and base else 0.0,
            )
        )
    return rows


def _logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 100) -> np.ndarray:
    """Newton's method with an L2 penalty on the weights (not the intercept)."""
    x1 = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x1.shape[1])
    penalty = np.eye(x1.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-x1 @ w))
        grad = x1.T @ (p - y) + penalty @ w
        hess = x1.T @ (x1 * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def _fit_one(x: np.ndarray, y: np.ndarray, names: list[str], l2: float) -> GateModel:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    w = _logistic((x - mean) / scale, y.astype(float), l2)
    return GateModel(
        features=names, mean=mean.tolist(), scale=scale.tolist(), weights=w[1:].tolist(), bias=float(w[0])
    )


def _held_out(x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str], l2: float) -> np.ndarray:
    """Each record's P(wrong) from a model fitted without its group."""
    out = np.zeros(len(y))
    for group in np.unique(groups):
        train, test = groups != group, groups == group
        if len(set(y[train])) < 2:  # nothing to learn from: the base rate
            out[test] = y[train].mean()
            continue
        model = _fit_one(x[train], y[train], names, l2)
        out[test] = [model.probability(dict(zip(names, row, strict=True))) for row in x[test]]
    return out


Choice = tuple[str, float]  # (feature set, L2 strength)


def _columns(names: list[str], wanted: Sequence[str]) -> list[int]:
    return [i for i, n in enumerate(names) if n in wanted]


def _fit_choice(
    x: np.ndarray, y: np.ndarray, names: list[str], wanted: Sequence[str], l2: float
) -> GateModel:
    """A model over the `wanted` features only."""
    cols = _columns(names, wanted)
    return _fit_one(x[:, cols], y, [names[c] for c in cols], l2)


def _choose(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str], sets: Mapping[str, Sequence[str]]
) -> Choice:
    """The feature set and penalty with the best leave-one-group-out AUROC on these records."""
    best: tuple[float, Choice] | None = None
    for set_name, chosen in sets.items():
        cols = _columns(names, chosen)
        for l2 in PENALTIES:
            score = auroc(_held_out(x[:, cols], y, groups, [names[c] for c in cols], l2), y)
            if score is not None and (best is None or score > best[0]):
                best = (score, (set_name, l2))
    return best[1] if best else ("all", PENALTIES[0])  # one class in every fold: nothing to rank


def _nested(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str], sets: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, list[Choice]]:
    """Each record's P(wrong) from a model whose feature set and penalty were chosen, and whose
    weights were fitted, without its group: the choice is part of what is cross-validated."""
    out = np.zeros(len(y))
    picks = []
    for group in np.unique(groups):
        train, test = groups != group, groups == group
        if len(set(y[train])) < 2 or len(np.unique(groups[train])) < 2:
            out[test] = y[train].mean()
            continue
        set_name, l2 = _choose(x[train], y[train], groups[train], names, sets)
        picks.append((set_name, l2))
        model = _fit_choice(x[train], y[train], names, sets[set_name], l2)
        out[test] = [model.probability(dict(zip(names, row, strict=True))) for row in x[test]]
    return out, picks


@dataclass
class FitReport:
    model: GateModel
    n: int
    wrong: int
    groups: int
    cv_auroc: float | None
    interval: tuple[float, float] | None
    per_feature: dict[str, float | None]
    table: list[RiskRow]
    chosen: RiskRow | None
    feature_set: str = "all"
    l2: float = PENALTIES[0]
    fold_choices: list[Choice] = field(default_factory=list)


def fit(
    features: Sequence[Mapping[str, float | None]],
    wrong: Sequence[bool],
    groups: Sequence[str],
    *,
    names: Sequence[str],
    sets: Mapping[str, Sequence[str]] | None = None,
    max_escalation: float = 0.35,
    max_right_escalated: float = 0.10,
) -> FitReport:
    """Fit on every record; judge by folds that each hold out whole groups (conversations).

    The feature set (among `sets`, by default `FEATURE_SETS`, and all of `names`) and the L2
    penalty are chosen by leave-one-group-out AUROC; the reported AUROC is nested, so that
    choice is made inside each fold without the held-out group. The operating threshold is the
    one, among the nested predictions, that catches the most wrong answers while escalating at
    most `max_escalation` of the questions and at most `max_right_escalated` of the right ones.
    """
    names = list(names)
    if len(features) != len(wrong) or len(wrong) != len(groups):
        raise InvalidInputError("features, labels and groups must have the same length")
    if len(set(wrong)) < 2:
        raise InvalidInputError("fitting needs both right and wrong fast answers")
    if len(set(groups)) < 2:
        raise InvalidInputError("cross-validation needs records from at least two conversations")
    raw = np.array([[np.nan if f.get(n) is None else float(f[n]) for n in names] for f in features])
    known = ~np.isnan(raw)
    means = np.where(known, raw, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    x = np.where(known, raw, means)  # a missing value sits at the mean: it adds nothing
    y = np.asarray(wrong, dtype=bool)
    g = np.asarray(groups)
    offered = FEATURE_SETS if sets is None else sets
    candidates = {k: [n for n in v if n in names] for k, v in offered.items()}
    candidates = {k: v for k, v in candidates.items() if v} | {"all": names}
    held_out, picks = _nested(x, y, g, names, candidates)
    table = risk_coverage(held_out, y)
    ok = [r for r in table if r.escalation <= max_escalation and r.right_escalated <= max_right_escalated]
    chosen = max(ok, key=lambda r: r.caught) if ok else None
    set_name, l2 = _choose(x, y, g, names, candidates)
    model = _fit_choice(x, y, names, candidates[set_name], l2)
    model.threshold = chosen.threshold if chosen else 1.0
    return FitReport(
        model=model,
        n=len(y),
        wrong=int(y.sum()),
        groups=len(set(groups)),
        cv_auroc=auroc(held_out, y),
        interval=bootstrap_interval(held_out, y),
        per_feature={n: auroc(x[:, i], y) for i, n in enumerate(names)},
        table=table,
        chosen=chosen,
        feature_set=set_name,
        l2=l2,
        fold_choices=picks,
    )


@dataclass
class Labelled:
    """Questions whose fast answers were judged: what the gate read, and whether it was wrong."""

    features: list[dict[str, float | None]]
    wrong: list[bool]
    groups: list[str]  # the conversation of each question: the unit cross-validation holds out


def load_labelled(path: str | Path, wrong_below: float = 0.5) -> Labelled:
    """Read a benchmark's `questions.jsonl`: lines with `gate_features`, an `f1` and a
    `conversation` (the other lines are skipped). A fast answer with F1 < `wrong_below` is wrong.

    Each (conversation, question) counts once, even when several gated systems answered it:
    their fast answers and gate readings are the same.
    """
    seen: dict[tuple[str, object], tuple[dict[str, float | None], bool]] = {}
    for _, data in json_lines(path):
        if not isinstance(data, dict) or not data.get("gate_features") or data.get("f1") is None:
            continue
        if data.get("path") == "deliberate":  # its F1 is System 2's, not the fast answer's
            continue
        seen.setdefault(
            (str(data.get("conversation")), data.get("q")), (data["gate_features"], data["f1"] < wrong_below)
        )
    if not seen:
        raise InvalidInputError(
            f"{path} holds no labelled gate readings: run `dualmem bench ... --mode gate:entropy` "
            "(any gate:<policy> system) to make them"
        )
    keys = list(seen)
    return Labelled(
        features=[seen[k][0] for k in keys], wrong=[seen[k][1] for k in keys], groups=[k[0] for k in keys]
    )


def format_fit(report: FitReport, rows: int = 10) -> str:
    """The cross-validated quality of a fit: AUROC, per-feature AUROC and the risk-coverage table."""
    low, high = report.interval or (float("nan"), float("nan"))
    auc = f"{report.cv_auroc:.3f}" if report.cv_auroc is not None else "n/a"
    out = [
        f"{report.n} questions ({report.wrong} fast answers wrong) from {report.groups} conversations",
        f"cross-validated AUROC for 'fast answer wrong' (each conversation held out, the feature "
        f"set and penalty chosen inside each fold): {auc} [95% bootstrap {low:.3f}, {high:.3f}]",
        f"model: feature set {report.feature_set!r} ({len(report.model.features)} features), "
        f"L2 {report.l2:g}; per fold: " + ", ".join(f"{k} {l2:g}" for k, l2 in report.fold_choices),
        "",
        "| escalate if P(wrong) >= | escalation | wrong caught | right escalated | lift |",
        "|---|---|---|---|---|",
    ]
    step = max(1, len(report.table) // rows)
    for r in report.table[::step]:
        mark = " <- chosen" if r is report.chosen else ""
        share = f"{r.escalation:.0%} | {r.caught:.0%} | {r.right_escalated:.0%}"
        out.append(f"| {r.threshold:.3f} | {share} | {r.lift:.2f}{mark} |")
    if report.chosen is None:
        out.append("no threshold meets the escalation limits: the model escalates nothing")
    elif report.chosen not in report.table[::step]:
        r = report.chosen
        out.append(
            f"chosen: P(wrong) >= {r.threshold:.3f}: escalation {r.escalation:.0%}, caught {r.caught:.0%}, "
            f"right escalated {r.right_escalated:.0%}, lift {r.lift:.2f}"
        )
    ranked = sorted(report.per_feature.items(), key=lambda kv: -abs((kv[1] or 0.5) - 0.5))
    out += ["", "single features, AUROC for 'wrong' (below 0.5: higher means right):"]
    out += [f"  {name}: {a:.3f}" for name, a in ranked[:12] if a is not None]
    return "\n".join(out)
