"""The paper's hypotheses as testable statements, each with a verdict at a grid's budget (``claims.md``).

Every claim compares SimVAE with other methods on one metric. A comparison holds our two means,
their standard errors over seeds and the test: the difference (SimVAE minus the other, signed so
that positive favours SimVAE; for lower-is-better metrics the other minus SimVAE) against twice
the combined standard error sqrt(se_a^2 + se_b^2), with Welch's t-test p-value beside it:

- supported: the difference favours SimVAE by more than 2 combined standard errors;
- contradicted: it favours the other method by more than 2 combined standard errors;
- not resolved: within 2 combined standard errors, or fewer than two seeds on either side (a
  single seed has no standard error), or a figure missing.

A claim is supported when every comparison is, contradicted when any is, else not resolved. The
paper's own figures for the same comparison are shown beside ours.

- H1 (section 5, 7; Table 1): on MNIST and Fashion-MNIST SimVAE at least matches each
  discriminative method (SimCLR, MoCo, MoCo v2, VICReg) on content (MLP probe, k-NN).
- H2 (section 5; Figs. 3-6): SimVAE keeps more style than each discriminative method (MLP probe on
  the style targets: their mean; CelebA: hair colour).
- H3 (section 7; Table 1): SimVAE beats VAE, beta-VAE and CR-VAE on content (MLP probe, k-NN).
- T7 (section 7; Table 7): SimVAE has lower reconstruction MSE and FID than VAE, beta-VAE and
  CR-VAE (Inception FID where measured, else the classifier FID, said so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..evaluate.registry import format_value
from .model import Note, Section, Table, blocks_markdown
from .paper import DISCRIMINATIVE, GENERATIVE_BASELINES, METHOD_LABELS, STATEMENTS, paper_value
from .tables import DATASET_LABELS, method_groups, style_targets

Z = 2.0  # combined standard errors a difference must exceed
VERDICTS = ("supported", "contradicted", "not resolved")


@dataclass
class Comparison:
    metric: str  # metrics.json key, or "style (mean of N targets)"
    key: str  # the key that formats it
    other: str
    ours: tuple  # (simvae mean, se, n)
    theirs: tuple  # (other mean, se, n)
    lower_is_better: bool = False
    paper: tuple | None = None  # (simvae, other) paper means
    verdict: str = "not resolved"
    why: str = ""
    p_value: float | None = None


@dataclass
class Claim:
    name: str
    statement: str
    test: str
    comparisons: list[Comparison] = field(default_factory=list)
    verdict: str = "not resolved"
    note: str = ""


def _stats(runs: list[dict], key) -> tuple:
    """(mean, se or None, n) over runs of ``key`` (a key, or a function of a run's metrics)."""
    vals = []
    for r in runs:
        v = key(r) if callable(key) else r.get(key)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            vals.append(float(v))
    if not vals:
        return None, None, 0
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None, 1
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return m, sd / math.sqrt(len(vals)), len(vals)


def welch_p(a: tuple, b: tuple) -> float | None:
    """Two-sided p-value of Welch's t-test from (mean, se, n) of two samples, or None."""
    (ma, sa, na), (mb, sb, nb) = a, b
    if sa is None or sb is None or na < 2 or nb < 2:
        return None
    var = sa**2 + sb**2
    if var == 0:
        return 0.0 if ma != mb else 1.0
    t = (ma - mb) / math.sqrt(var)
    dof = var**2 / (sa**4 / (na - 1) + sb**4 / (nb - 1))
    from scipy.stats import t as student

    return float(2 * student.sf(abs(t), dof))


def judge(c: Comparison) -> Comparison:
    (ma, sa, _), (mb, sb, _) = c.ours, c.theirs
    if ma is None or mb is None:
        c.verdict, c.why = "not resolved", "a figure is missing"
        return c
    if sa is None or sb is None:
        c.verdict, c.why = "not resolved", "one seed: no standard error"
        return c
    diff = (mb - ma) if c.lower_is_better else (ma - mb)
    se = math.sqrt(sa**2 + sb**2)
    c.p_value = welch_p(c.ours, c.theirs)
    if se == 0:
        c.verdict = "supported" if diff > 0 else "contradicted" if diff < 0 else "not resolved"
    elif diff > Z * se:
        c.verdict = "supported"
    elif diff < -Z * se:
        c.verdict = "contradicted"
    else:
        c.verdict = "not resolved"
    c.why = f"difference {_fmt(c.key, diff)} vs {Z:g} x combined SE {_fmt(c.key, Z * se)}"
    return c


def _fmt(key: str, v) -> str:
    return format_value(key, v) if v is not None else "–"


def _overall(comparisons: list[Comparison]) -> str:
    if not comparisons:
        return "not resolved"
    if any(c.verdict == "contradicted" for c in comparisons):
        return "contradicted"
    if all(c.verdict == "supported" for c in comparisons):
        return "supported"
    return "not resolved"


def _compare(groups, dataset, others, metrics, claim: Claim) -> None:
    simvae = groups.get("simvae", [])
    for key, name, fn, lower in metrics:
        for other in others:
            if other not in groups:
                continue
            ps, po = paper_value(key, "simvae", dataset), paper_value(key, other, dataset)
            c = Comparison(
                name,
                key if fn is None else "mlp_acc",
                other,
                _stats(simvae, fn or key),
                _stats(groups[other], fn or key),
                lower,
                (ps[0], po[0]) if ps and po else None,
            )
            claim.comparisons.append(judge(c))
    claim.verdict = _overall(claim.comparisons)


def build_claims(grid: dict) -> list[Claim]:
    """The claims H1, H2, H3 and T7 tested on a reproduce grid's runs (see the module's text)."""
    dataset = grid["dataset"]
    groups = {m: runs for m, runs in method_groups(grid).items() if runs}
    test = (
        f"SimVAE minus the other method (lower-is-better metrics: the other minus SimVAE) against {Z:g} combined "
        "standard errors over seeds; Welch's t-test p-value shown"
    )
    content = [("mlp_acc", "MLP probe", None, False), ("knn_acc", "k-NN", None, False)]
    claims = []
    h1 = Claim(
        "H1",
        "On MNIST and Fashion-MNIST, SimVAE at least matches each discriminative method (SimCLR, MoCo, "
        "MoCo v2, VICReg) on content (MLP probe and k-NN accuracy). Paper: " + STATEMENTS["H1"],
        test,
    )
    _compare(groups, dataset, DISCRIMINATIVE, content, h1)
    if dataset not in ("mnist", "fashion-mnist"):
        h1.note = (
            f"H1 is stated for data sets that can be well modelled (MNIST, Fashion-MNIST here); on "
            f"{DATASET_LABELS.get(dataset, dataset)} the comparisons are shown but give no verdict."
        )
        h1.verdict = "not resolved"
    claims.append(h1)

    style, _ = style_targets(groups)
    h2 = Claim(
        "H2",
        "SimVAE keeps more style than each discriminative method (MLP probe accuracy on the style targets"
        + (": hair colour" if "hair_colour" in style else ", their mean")
        + "). Paper: "
        + STATEMENTS["H2"],
        test,
    )
    if style:
        targets = ["hair_colour"] if "hair_colour" in style else style

        def style_mean(r, targets=targets):
            vals = [r.get(f"{t}/mlp_acc") for t in targets]
            return sum(vals) / len(vals) if all(isinstance(v, (int, float)) for v in vals) else None

        what = "hair colour" if targets == ["hair_colour"] else f"style (mean of {len(targets)} targets)"
        _compare(groups, dataset, DISCRIMINATIVE, [("style", what, style_mean, False)], h2)
    else:
        h2.note = "The runs were not scored on style targets (evaluation 'style' skipped)."
    claims.append(h2)

    h3 = Claim("H3", "SimVAE beats VAE, beta-VAE and CR-VAE on content (MLP probe and k-NN accuracy). Paper: " + STATEMENTS["H3"], test)
    _compare(groups, dataset, GENERATIVE_BASELINES, content, h3)
    claims.append(h3)

    has_fid = any("fid" in r for runs in groups.values() for r in runs)
    fid = ("fid", "FID", None, True) if has_fid else ("classifier_fid", "classifier FID (Inception FID not measured)", None, True)
    t7 = Claim("T7", "SimVAE has a lower reconstruction MSE and FID than VAE, beta-VAE and CR-VAE. Paper: " + STATEMENTS["T7"], test)
    _compare(groups, dataset, GENERATIVE_BASELINES, [("recon_mse", "MSE", None, True), fid], t7)
    if not has_fid:
        t7.note = "FID was not measured (off on a CPU by default): the classifier FID stands in for it."
    claims.append(t7)
    for c in claims:
        if "simvae" not in groups:
            c.note = (c.note + " " if c.note else "") + "SimVAE was not run (or not evaluated) in this grid."
        elif not c.comparisons and not c.note:
            c.note = "None of the methods it compares with was run in this grid."
    return claims


def claims_section(grid: dict) -> Section:
    """The claims as a report section: one line per claim with its verdict, then each claim's figures."""
    claims = build_claims(grid)
    blocks = [
        Table(
            ["claim", "verdict", "comparisons (supported / contradicted / not resolved)"],
            [[c.name, c.verdict, " / ".join(str(sum(x.verdict == v for x in c.comparisons)) for v in VERDICTS)] for c in claims],
            f"The paper's hypotheses tested at this grid's budget on {DATASET_LABELS.get(grid['dataset'], grid['dataset'])}. "
            f"Test: {claims[0].test}. One seed gives no standard error, so no verdict.",
        )
    ]
    for c in claims:
        rows = []
        for x in c.comparisons:
            rows.append(
                [
                    x.metric,
                    METHOD_LABELS.get(x.other, x.other),
                    format_value(x.key, x.ours[0], x.ours[1]) if x.ours[0] is not None else "–",
                    format_value(x.key, x.theirs[0], x.theirs[1]) if x.theirs[0] is not None else "–",
                    f"{x.ours[2]} / {x.theirs[2]}",
                    f"{x.p_value:.3g}" if x.p_value is not None else "–",
                    x.verdict + (f" ({x.why})" if x.why else ""),
                    f"{_fmt(x.key, x.paper[0])} vs {_fmt(x.key, x.paper[1])}" if x.paper else "–",
                ]
            )
        blocks.append(
            Table(
                ["metric", "other", "SimVAE (ours)", "other (ours)", "seeds", "Welch p", "verdict", "paper: SimVAE vs other"],
                rows,
                f"{c.name}: {c.verdict}. {c.statement}",
            )
        )
        if c.note:
            blocks.append(Note(c.note))
    return Section("Claims", blocks)


def claims_markdown(grid: dict) -> str:
    from .tables import provenance_line

    section = claims_section(grid)
    return f"# {section.title}\n\n{provenance_line(grid)}\n\n" + blocks_markdown(section.blocks)
