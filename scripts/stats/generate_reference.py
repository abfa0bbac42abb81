#!/usr/bin/env python3
"""Reference values for sextant-stats, from SciPy and statsmodels.

Writes crates/stats/tests/reference.json; the Rust test `reference` in
crates/stats/tests/it checks every value to 1e-9 relative.

Run from anywhere:  python3 scripts/stats/generate_reference.py
It creates scripts/stats/.venv (git-ignored) and installs the pinned
packages from PyPI into it on first use, then re-runs itself there.

Inputs are sufficient statistics, exactly what the Rust API takes. Where a
statistic has a library implementation it is used (scipy.stats.ttest_ind_
from_stats, statsmodels proportions_ztest / multipletests / NormalIndPower,
scipy.stats.chisquare, scipy.integrate.quad); the rest are closed forms
written out in NumPy/SciPy from the papers cited in crates/stats/src/lib.rs;
CUPED is also checked against an OLS (ANCOVA) fit on the raw rows; CUPED
for ratio metrics against OLS on the raw rows' delta-method linearisations
and by a Monte Carlo simulation of its bias, spread and coverage.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "crates" / "stats" / "tests" / "reference.json"
VENV = HERE / ".venv"
PINS = ["numpy==2.4.6", "scipy==1.17.1", "statsmodels==0.15.0"]


def ensure_venv():
    """Re-execute inside a venv that has the pinned packages."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    subprocess.check_call([str(py), "-m", "pip", "install", "-q", *PINS])
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


ensure_venv()

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import statsmodels  # noqa: E402
from scipy import integrate, optimize, stats  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402
from statsmodels.stats.power import NormalIndPower  # noqa: E402
from statsmodels.stats.proportion import (  # noqa: E402
    confint_proportions_2indep,
    proportions_ztest,
)

rng = np.random.default_rng(20240607)


def f(x):
    return float(x)


def close(a, b, tol=1e-12):
    assert abs(a - b) <= tol * max(1.0, abs(b)), (a, b)


# ---------------------------------------------------------------- summaries
def var_from_sums(n, s, ss):
    # The same formula as summary.rs, so rounding agrees.
    return (ss - s * (s / n)) / (n - 1)


def cov_from_sums(n, sx, sy, sxy):
    return (sxy - sx * (sy / n)) / (n - 1)


def sums_for(n, mean, sd):
    """Σx and Σx² of a sample with the given mean and sd (exactly)."""
    s = n * mean
    ss = (n - 1) * sd * sd + n * mean * mean
    return {"n": int(n), "sum": f(s), "sum_sq": f(ss)}


def sums_of(x):
    return {"n": int(len(x)), "sum": f(np.sum(x)), "sum_sq": f(np.sum(x * x))}


def mean_var(a):
    n = a["n"]
    return a["sum"] / n, var_from_sums(n, a["sum"], a["sum_sq"])


# ---------------------------------------------------------------- welch
def welch_case(name, c, t, alpha):
    mc, vc = mean_var(c)
    mt, vt = mean_var(t)
    res = stats.ttest_ind_from_stats(
        mt, np.sqrt(vt), t["n"], mc, np.sqrt(vc), c["n"], equal_var=False
    )
    vmc, vmt = vc / c["n"], vt / t["n"]
    se = np.sqrt(vmc + vmt)
    df = (vmc + vmt) ** 2 / (vmc**2 / (c["n"] - 1) + vmt**2 / (t["n"] - 1))
    diff = mt - mc
    q = stats.t.isf(alpha / 2, df)
    # Independent p from the t distribution directly, to check SciPy's path.
    close(res.pvalue, 2 * stats.t.sf(abs(diff / se), df), 1e-11)
    return {
        "name": name,
        "input": {"control": c, "treatment": t, "alpha": alpha},
        "expected": {
            "difference": f(diff),
            "std_error": f(se),
            "t": f(res.statistic),
            "df": f(df),
            "p_value": f(res.pvalue),
            "ci_lower": f(diff - q * se),
            "ci_upper": f(diff + q * se),
        },
    }


welch = [
    welch_case("small samples", sums_of(rng.normal(10, 2, 5)), sums_of(rng.normal(12, 3, 8)), 0.05),
    welch_case("tiny df", sums_of(rng.normal(0, 1, 2)), sums_of(rng.normal(0.5, 5, 3)), 0.05),
    welch_case("medium, unequal variance", sums_for(50, 3.1, 1.2), sums_for(80, 3.5, 2.9), 0.1),
    welch_case("large, small effect", sums_for(100_000, 20.0, 15.0), sums_for(100_500, 20.1, 15.2), 0.05),
    welch_case("million units", sums_for(1_000_000, 1.00, 4.0), sums_for(1_000_000, 1.012, 4.0), 0.05),
    welch_case("strong effect, alpha 0.01", sums_for(2_000, 5.0, 1.0), sums_for(2_000, 5.3, 1.1), 0.01),
    welch_case("negative effect", sums_for(400, 100.0, 30.0), sums_for(420, 96.0, 25.0), 0.05),
]

# ---------------------------------------------------------------- proportions
def ztest_case(name, c, t, alpha):
    z, p = proportions_ztest([t["conversions"], c["conversions"]], [t["n"], c["n"]])
    pc, pt = c["conversions"] / c["n"], t["conversions"] / t["n"]
    se = np.sqrt(pc * (1 - pc) / c["n"] + pt * (1 - pt) / t["n"])
    diff = pt - pc
    lo, hi = confint_proportions_2indep(
        t["conversions"], t["n"], c["conversions"], c["n"], method="wald", compare="diff", alpha=alpha
    )
    q = stats.norm.isf(alpha / 2)
    close(lo, diff - q * se, 1e-11)
    close(hi, diff + q * se, 1e-11)
    return {
        "name": name,
        "input": {"control": c, "treatment": t, "alpha": alpha},
        "expected": {
            "difference": f(diff),
            "z": f(z),
            "p_value": f(p),
            "std_error": f(se),
            "ci_lower": f(diff - q * se),
            "ci_upper": f(diff + q * se),
        },
    }


def prop(n, k):
    return {"n": int(n), "conversions": int(k)}


ztest = [
    ztest_case("ten percent baseline", prop(10_000, 1_000), prop(10_000, 1_080), 0.05),
    ztest_case("small counts", prop(60, 7), prop(55, 13), 0.05),
    ztest_case("large, rare event", prop(2_000_000, 2_400), prop(2_010_000, 2_620), 0.01),
    ztest_case("worse treatment", prop(5_000, 2_500), prop(5_100, 2_400), 0.1),
]

# ---------------------------------------------------------------- relative lift
def lift(mc, vmc, mt, vmt, alpha):
    r = mt / mc
    var = vmt / mc**2 + r * r * vmc / mc**2
    se = np.sqrt(var)
    est = r - 1
    q = stats.norm.isf(alpha / 2)
    return {
        "estimate": f(est),
        "std_error": f(se),
        "z": f(est / se),
        "p_value": f(2 * stats.norm.sf(abs(est / se))),
        "ci_lower": f(est - q * se),
        "ci_upper": f(est + q * se),
    }


lift_means = []
for name, c, t, alpha in [
    ("revenue per user", sums_for(20_000, 12.5, 40.0), sums_for(20_100, 13.1, 41.0), 0.05),
    ("small samples", sums_of(rng.normal(5, 1, 12)), sums_of(rng.normal(5.5, 1.3, 9)), 0.1),
    ("negative lift", sums_for(3_000, 200.0, 50.0), sums_for(3_000, 190.0, 55.0), 0.05),
]:
    mc, vc = mean_var(c)
    mt, vt = mean_var(t)
    lift_means.append(
        {
            "name": name,
            "input": {"control": c, "treatment": t, "alpha": alpha},
            "expected": lift(mc, vc / c["n"], mt, vt / t["n"], alpha),
        }
    )

lift_props = []
for name, c, t, alpha in [
    ("conversion lift", prop(50_000, 2_500), prop(50_000, 2_650), 0.05),
    ("small counts", prop(200, 20), prop(210, 31), 0.05),
]:
    pc, pt = c["conversions"] / c["n"], t["conversions"] / t["n"]
    lift_props.append(
        {
            "name": name,
            "input": {"control": c, "treatment": t, "alpha": alpha},
            "expected": lift(pc, pc * (1 - pc) / c["n"], pt, pt * (1 - pt) / t["n"], alpha),
        }
    )

# ---------------------------------------------------------------- ratio metrics
def ratio_sums(n, sessions_mean, rev_per_session, noise):
    den = rng.poisson(sessions_mean, n).astype(float) + 1.0
    num = den * rev_per_session + rng.normal(0, noise, n) * np.sqrt(den)
    return {
        "n": int(n),
        "sum_num": f(num.sum()),
        "sum_num_sq": f((num * num).sum()),
        "sum_den": f(den.sum()),
        "sum_den_sq": f((den * den).sum()),
        "sum_num_den": f((num * den).sum()),
    }


def ratio_var(a):
    n = a["n"]
    r = a["sum_num"] / a["sum_den"]
    vn = var_from_sums(n, a["sum_num"], a["sum_num_sq"])
    vd = var_from_sums(n, a["sum_den"], a["sum_den_sq"])
    cv = cov_from_sums(n, a["sum_num"], a["sum_den"], a["sum_num_den"])
    md = a["sum_den"] / n
    return r, (vn - 2 * r * cv + r * r * vd) / (n * md * md)


ratio = []
for name, c, t, alpha in [
    ("revenue per session", ratio_sums(3_000, 3.0, 2.0, 1.5), ratio_sums(3_100, 3.0, 2.1, 1.5), 0.05),
    ("clicks per pageview", ratio_sums(800, 8.0, 0.3, 0.4), ratio_sums(750, 8.5, 0.29, 0.4), 0.1),
]:
    rc, vc = ratio_var(c)
    rt, vt = ratio_var(t)
    se = np.sqrt(vc + vt)
    d = rt - rc
    q = stats.norm.isf(alpha / 2)
    ratio.append(
        {
            "name": name,
            "input": {"control": c, "treatment": t, "alpha": alpha},
            "expected": {
                "control_ratio": f(rc),
                "treatment_ratio": f(rt),
                "control_variance": f(vc),
                "treatment_variance": f(vt),
                "difference": f(d),
                "std_error": f(se),
                "z": f(d / se),
                "p_value": f(2 * stats.norm.sf(abs(d / se))),
                "ci_lower": f(d - q * se),
                "ci_upper": f(d + q * se),
                "relative": lift(rc, vc, rt, vt, alpha),
            },
        }
    )

# ---------------------------------------------------------------- CUPED
def cuped_raw(n, effect, rho):
    x = rng.normal(10, 3, n)
    y = 10 + effect + rho * (x - 10) + np.sqrt(1 - rho * rho) * rng.normal(0, 3, n)
    return x, y


# Conversions with a pre-period conversion as covariate: a generator of its
# own, so the cases above keep their draws.
rng_conversion = np.random.default_rng(20261128)


def conversion_raw(n, effect):
    x = (rng_conversion.random(n) < 0.3).astype(float)
    y = (rng_conversion.random(n) < 0.2 + 0.3 * x + effect).astype(float)
    return x, y


def sums_of(raw):
    x, y = raw
    return {
        "n": int(len(x)),
        "sum_y": f(y.sum()),
        "sum_y_sq": f((y * y).sum()),
        "sum_x": f(x.sum()),
        "sum_x_sq": f((x * x).sum()),
        "sum_xy": f((x * y).sum()),
    }


def ancova(control, treatment):
    """Independent check from the raw rows: the CUPED estimate with pooled
    θ is the treatment coefficient of the OLS fit y ~ 1 + treated + x
    (ANCOVA), and θ its coefficient of x."""
    (xc, yc), (xt, yt) = control, treatment
    x = np.concatenate([xc, xt])
    y = np.concatenate([yc, yt])
    treated = np.concatenate([np.zeros(len(xc)), np.ones(len(xt))])
    design = np.column_stack([np.ones_like(x), treated, x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return beta[1], beta[2]


def centered(a):
    n = a["n"]
    syy = var_from_sums(n, a["sum_y"], a["sum_y_sq"]) * (n - 1)
    sxx = var_from_sums(n, a["sum_x"], a["sum_x_sq"]) * (n - 1)
    sxy = cov_from_sums(n, a["sum_x"], a["sum_y"], a["sum_xy"]) * (n - 1)
    return syy, sxx, sxy


cuped = []
for name, raw_c, raw_t, alpha in [
    ("strong covariate", cuped_raw(5_000, 0.0, 0.8), cuped_raw(5_000, 0.15, 0.8), 0.05),
    ("weak covariate", cuped_raw(2_000, 0.0, 0.2), cuped_raw(2_200, 0.2, 0.2), 0.05),
    ("unbalanced arms", cuped_raw(1_000, 0.0, 0.6), cuped_raw(4_000, -0.1, 0.6), 0.1),
    ("conversion with a pre-period conversion", conversion_raw(8_000, 0.0), conversion_raw(8_000, 0.02), 0.05),
]:
    c, t = sums_of(raw_c), sums_of(raw_t)
    ols_difference, ols_theta = ancova(raw_c, raw_t)
    syc, sxc, sxyc = centered(c)
    syt, sxt, sxyt = centered(t)
    theta = (sxyc + sxyt) / (sxc + sxt)
    nc, nt = c["n"], t["n"]
    yc, yt = c["sum_y"] / nc, t["sum_y"] / nt
    xc, xt = c["sum_x"] / nc, t["sum_x"] / nt
    xall = (c["sum_x"] + t["sum_x"]) / (nc + nt)
    va = lambda syy, sxx, sxy, n: (syy - 2 * theta * sxy + theta * theta * sxx) / (n - 1)  # noqa: E731
    var_adj = va(syc, sxc, sxyc, nc) / nc + va(syt, sxt, sxyt, nt) / nt
    var_raw = syc / (nc - 1) / nc + syt / (nt - 1) / nt
    est = (yt - yc) - theta * (xt - xc)
    close(est, ols_difference, 1e-9)
    close(theta, ols_theta, 1e-9)
    se = np.sqrt(var_adj)
    q = stats.norm.isf(alpha / 2)
    cuped.append(
        {
            "name": name,
            "input": {"control": c, "treatment": t, "alpha": alpha},
            "expected": {
                "theta": f(theta),
                "control_adjusted_mean": f(yc - theta * (xc - xall)),
                "treatment_adjusted_mean": f(yt - theta * (xt - xall)),
                "difference": f(est),
                "std_error": f(se),
                "z": f(est / se),
                "p_value": f(2 * stats.norm.sf(abs(est / se))),
                "ci_lower": f(est - q * se),
                "ci_upper": f(est + q * se),
                "unadjusted_std_error": f(np.sqrt(var_raw)),
                "variance_reduction": f(1 - var_adj / var_raw),
                "ols_difference": f(ols_difference),
                "ols_theta": f(ols_theta),
            },
        }
    )

# ---------------------------------------------------------------- CUPED for ratios
# Deng, Knoblich & Lu (2018): the ratio R = Σnum/Σden is adjusted by the
# pre-period ratio Rx = Σpre_num/Σpre_den through the delta method. Each
# unit's contribution is linearised, l_y = (num − R·den)/mean(den) and
# l_x = (pre_num − Rx·pre_den)/mean(pre_den); θ pools the arms' within-arm
# Σl_x·l_y / Σl_x²; estimate (R_t − R_c) − θ(Rx_t − Rx_c); variance per arm
# Var(l_y − θ·l_x)/n. Below: the closed form from the sums (what the Rust
# code gets), checked against the raw rows (OLS on the linearisations, the
# residual variance), against plain CUPED when every denominator is 1, and
# by a Monte Carlo simulation of the estimator's bias, spread and coverage.
rng_ratio_cuped = np.random.default_rng(20261129)


def ratio_cuped_raw(n, effect, sticky_sessions=True, unit_den=False):
    """Per unit a spending level (gamma, mean 10), sessions before and in
    the experiment (Poisson; the same count in both when sticky; some units
    have none before), revenue = sessions × (level + effect) + noise."""
    g = rng_ratio_cuped
    level = g.gamma(4.0, 2.5, n)
    if unit_den:
        den = np.ones(n)
        pre_den = np.ones(n)
    else:
        pre_den = g.poisson(2.5, n).astype(float)
        den = pre_den + 1.0 if sticky_sessions else g.poisson(2.5, n).astype(float) + 1.0
    pre_num = pre_den * level + g.normal(0, 4.0, n) * np.sqrt(pre_den)
    num = den * (level + effect) + g.normal(0, 4.0, n) * np.sqrt(den)
    return num, den, pre_num, pre_den


def ratio_stats_of(num, den):
    return {
        "n": int(len(num)),
        "sum_num": f(num.sum()),
        "sum_num_sq": f((num * num).sum()),
        "sum_den": f(den.sum()),
        "sum_den_sq": f((den * den).sum()),
        "sum_num_den": f((num * den).sum()),
    }


def ratio_cuped_sums(raw):
    num, den, pre_num, pre_den = raw
    return {
        "metric": ratio_stats_of(num, den),
        "covariate": ratio_stats_of(pre_num, pre_den),
        "sum_num_pre_num": f((num * pre_num).sum()),
        "sum_num_pre_den": f((num * pre_den).sum()),
        "sum_den_pre_num": f((den * pre_num).sum()),
        "sum_den_pre_den": f((den * pre_den).sum()),
    }


def ratio_cuped_centered(a):
    """Σl_y², Σl_x², Σl_x·l_y from the sums (the explicit delta-method formula)."""
    m, p = a["metric"], a["covariate"]
    n = m["n"]
    r, rx = m["sum_num"] / m["sum_den"], p["sum_num"] / p["sum_den"]
    md, mpd = m["sum_den"] / n, p["sum_den"] / n
    cv = lambda sa, sb, sab: cov_from_sums(n, sa, sb, sab)  # noqa: E731
    vn = var_from_sums(n, m["sum_num"], m["sum_num_sq"])
    vd = var_from_sums(n, m["sum_den"], m["sum_den_sq"])
    vpn = var_from_sums(n, p["sum_num"], p["sum_num_sq"])
    vpd = var_from_sums(n, p["sum_den"], p["sum_den_sq"])
    syy = (vn - 2 * r * cv(m["sum_num"], m["sum_den"], m["sum_num_den"]) + r * r * vd) / (md * md)
    sxx = (vpn - 2 * rx * cv(p["sum_num"], p["sum_den"], p["sum_num_den"]) + rx * rx * vpd) / (mpd * mpd)
    sxy = (
        cv(m["sum_num"], p["sum_num"], a["sum_num_pre_num"])
        - rx * cv(m["sum_num"], p["sum_den"], a["sum_num_pre_den"])
        - r * cv(m["sum_den"], p["sum_num"], a["sum_den_pre_num"])
        + r * rx * cv(m["sum_den"], p["sum_den"], a["sum_den_pre_den"])
    ) / (md * mpd)
    return max(syy, 0.0) * (n - 1), max(sxx, 0.0) * (n - 1), sxy * (n - 1)


def ratio_cuped_formula(c, t, alpha):
    syc, sxc, sxyc = ratio_cuped_centered(c)
    syt, sxt, sxyt = ratio_cuped_centered(t)
    theta = (sxyc + sxyt) / (sxc + sxt)
    nc, nt = c["metric"]["n"], t["metric"]["n"]
    ratio_of = lambda s: s["sum_num"] / s["sum_den"]  # noqa: E731
    rc, rt = ratio_of(c["metric"]), ratio_of(t["metric"])
    xc, xt = ratio_of(c["covariate"]), ratio_of(t["covariate"])
    xall = (c["covariate"]["sum_num"] + t["covariate"]["sum_num"]) / (c["covariate"]["sum_den"] + t["covariate"]["sum_den"])
    va = lambda syy, sxx, sxy, n: max((syy - 2 * theta * sxy + theta * theta * sxx) / (n - 1), 0.0)  # noqa: E731
    var_adj = va(syc, sxc, sxyc, nc) / nc + va(syt, sxt, sxyt, nt) / nt
    var_raw = syc / (nc - 1) / nc + syt / (nt - 1) / nt
    est = (rt - rc) - theta * (xt - xc)
    se = np.sqrt(var_adj)
    q = stats.norm.isf(alpha / 2)
    return {
        "theta": f(theta),
        "control_adjusted_mean": f(rc - theta * (xc - xall)),
        "treatment_adjusted_mean": f(rt - theta * (xt - xall)),
        "difference": f(est),
        "std_error": f(se),
        "z": f(est / se),
        "p_value": f(2 * stats.norm.sf(abs(est / se))),
        "ci_lower": f(est - q * se),
        "ci_upper": f(est + q * se),
        "unadjusted_std_error": f(np.sqrt(var_raw)),
        "variance_reduction": f(1 - var_adj / var_raw),
    }


def linearised(raw):
    num, den, pre_num, pre_den = raw
    ly = (num - num.sum() / den.sum() * den) / den.mean()
    lx = (pre_num - pre_num.sum() / pre_den.sum() * pre_den) / pre_den.mean()
    return ly, lx


def ratio_cuped_from_rows(raw_c, raw_t):
    """Independent check from the raw rows: θ is the slope of the OLS fit
    l_y ~ 1 + treated + l_x on the linearisations, and the standard error
    comes from each arm's residual l_y − θ·l_x."""
    (lyc, lxc), (lyt, lxt) = linearised(raw_c), linearised(raw_t)
    ly, lx = np.concatenate([lyc, lyt]), np.concatenate([lxc, lxt])
    treated = np.concatenate([np.zeros(len(lyc)), np.ones(len(lyt))])
    beta, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(lx), treated, lx]), ly, rcond=None)
    theta = beta[2]
    var = sum(np.var(y - theta * x, ddof=1) / len(y) for y, x in [(lyc, lxc), (lyt, lxt)])
    return theta, np.sqrt(var)


cuped_ratio = []
for name, raw_c, raw_t, alpha in [
    ("revenue per session, sticky sessions", ratio_cuped_raw(3_000, 0.0), ratio_cuped_raw(3_000, 0.5), 0.05),
    ("sessions drawn afresh", ratio_cuped_raw(2_000, 0.0, False), ratio_cuped_raw(2_500, 0.3, False), 0.1),
    ("small arms", ratio_cuped_raw(40, 0.0), ratio_cuped_raw(35, 1.0), 0.05),
    ("denominator 1 everywhere", ratio_cuped_raw(1_500, 0.0, unit_den=True), ratio_cuped_raw(1_500, 0.4, unit_den=True), 0.05),
]:
    c, t = ratio_cuped_sums(raw_c), ratio_cuped_sums(raw_t)
    expected = ratio_cuped_formula(c, t, alpha)
    rows_theta, rows_se = ratio_cuped_from_rows(raw_c, raw_t)
    close(expected["theta"], rows_theta, 1e-9)
    close(expected["std_error"], rows_se, 1e-9)
    expected["rows_theta"] = f(rows_theta)
    expected["rows_std_error"] = f(rows_se)
    if name == "denominator 1 everywhere":
        # With every denominator 1 the ratio is a per-unit mean: plain CUPED.
        plain = lambda raw: sums_of((raw[2], raw[0]))  # noqa: E731
        pc, pt = plain(raw_c), plain(raw_t)
        ols_difference, ols_theta = ancova((raw_c[2], raw_c[0]), (raw_t[2], raw_t[0]))
        close(expected["difference"], ols_difference, 1e-9)
        close(expected["theta"], ols_theta, 1e-9)
    cuped_ratio.append({"name": name, "input": {"control": c, "treatment": t, "alpha": alpha}, "expected": expected})


def ratio_cuped_simulation(runs=2_000, n=800, effect=0.5, alpha=0.05):
    """Monte Carlo: the adjusted estimate is unbiased for the true
    difference of ratios, its delta-method standard error matches its
    spread across runs, its interval covers at the nominal rate, and the
    variance it removes is what the runs show."""
    est, se, raw_est, reduction, cover = [], [], [], [], 0
    for _ in range(runs):
        c = ratio_cuped_sums(ratio_cuped_raw(n, 0.0))
        t = ratio_cuped_sums(ratio_cuped_raw(n, effect))
        e = ratio_cuped_formula(c, t, alpha)
        est.append(e["difference"])
        se.append(e["std_error"])
        raw_est.append(t["metric"]["sum_num"] / t["metric"]["sum_den"] - c["metric"]["sum_num"] / c["metric"]["sum_den"])
        reduction.append(e["variance_reduction"])
        cover += e["ci_lower"] <= effect <= e["ci_upper"]
    est, se, raw_est = np.array(est), np.array(se), np.array(raw_est)
    out = {
        "runs": runs,
        "bias": f(est.mean() - effect),
        "sd_over_mean_se": f(est.std(ddof=1) / se.mean()),
        "coverage": f(cover / runs),
        "observed_variance_reduction": f(1 - est.var(ddof=1) / raw_est.var(ddof=1)),
        "mean_reported_variance_reduction": f(np.mean(reduction)),
    }
    assert abs(out["bias"]) < 4 * est.std(ddof=1) / np.sqrt(runs), out
    assert 0.95 < out["sd_over_mean_se"] < 1.05, out
    assert abs(out["coverage"] - (1 - alpha)) < 3 * np.sqrt(alpha * (1 - alpha) / runs), out
    assert abs(out["observed_variance_reduction"] - out["mean_reported_variance_reduction"]) < 0.05, out
    return out


cuped_ratio_simulation = ratio_cuped_simulation()
print("ratio CUPED simulation:", cuped_ratio_simulation)

# ---------------------------------------------------------------- sequential
def cs(est, se, n, alpha, tuning_n):
    l = -2 * np.log(alpha)
    rho2 = (l + np.log(l + 1)) / tuning_n
    v = n * rho2
    hw = se * np.sqrt(2 * (v + 1) / v * np.log(np.sqrt(v + 1) / alpha))
    z = est / se
    p = min(1.0, np.sqrt(v + 1) * np.exp(-0.5 * z * z * v / (v + 1)))
    return {
        "rho_squared": f(rho2),
        "half_width": f(hw),
        "ci_lower": f(est - hw),
        "ci_upper": f(est + hw),
        "p_value": f(p),
    }


sequential = []
for est, se, n, alpha, tn in [
    (0.5, 0.2, 1_000.0, 0.05, 10_000.0),
    (0.02, 0.004, 250_000.0, 0.05, 200_000.0),
    (-1.3, 0.4, 50.0, 0.1, 5_000.0),
    (0.0, 1.0, 10.0, 0.01, 10.0),
    (3.0, 0.5, 2e6, 0.05, 1e5),
]:
    sequential.append(
        {
            "name": f"estimate {est}, n {n}",
            "input": {"estimate": est, "std_error": se, "n": n, "alpha": alpha, "tuning_n": tn},
            "expected": cs(est, se, n, alpha, tn),
        }
    )
seq_means = []
for c, t, alpha, tn in [
    (sums_for(4_000, 10.0, 3.0), sums_for(4_100, 10.25, 3.2), 0.05, 20_000.0),
]:
    mc, vc = mean_var(c)
    mt, vt = mean_var(t)
    seq_means.append(
        {
            "name": "means",
            "input": {"control": c, "treatment": t, "alpha": alpha, "tuning_n": tn},
            "expected": cs(mt - mc, np.sqrt(vc / c["n"] + vt / t["n"]), c["n"] + t["n"], alpha, tn),
        }
    )

# ---------------------------------------------------------------- Bayesian
def normal_shortfall(m, s):
    return s * stats.norm.pdf(m / s) - m * stats.norm.cdf(-m / s)


bayes_means = []
for name, c, t, prior, alpha in [
    ("flat prior", sums_for(1_000, 5.0, 2.0), sums_for(1_000, 5.1, 2.1), None, 0.05),
    ("normal prior", sums_for(300, 1.0, 0.5), sums_for(320, 1.08, 0.55), {"mean": 0.0, "variance": 0.0025}, 0.1),
    ("treatment worse", sums_for(10_000, 50.0, 20.0), sums_for(10_000, 49.2, 20.0), None, 0.05),
]:
    mc, vc = mean_var(c)
    mt, vt = mean_var(t)
    v = vc / c["n"] + vt / t["n"]
    d = mt - mc
    if prior is None:
        pm, pv = d, v
    else:
        pv = 1 / (1 / prior["variance"] + 1 / v)
        pm = pv * (prior["mean"] / prior["variance"] + d / v)
    sd = np.sqrt(pv)
    q = stats.norm.isf(alpha / 2)
    bayes_means.append(
        {
            "name": name,
            "input": {"control": c, "treatment": t, "prior": prior, "alpha": alpha},
            "expected": {
                "posterior_mean": f(pm),
                "posterior_sd": f(sd),
                "ci_lower": f(pm - q * sd),
                "ci_upper": f(pm + q * sd),
                "chance_to_beat": f(stats.norm.cdf(pm / sd)),
                "expected_loss_treatment": f(normal_shortfall(pm, sd)),
                "expected_loss_control": f(normal_shortfall(-pm, sd)),
                "relative_lift": lift(mc, vc / c["n"], mt, vt / t["n"], alpha),
            },
        }
    )


def span(a, b):
    m = a / (a + b)
    s = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return m, s


def quad(fun, ay, by, extra=()):
    m, s = span(ay, by)
    lo, hi = max(0.0, m - 40 * s), min(1.0, m + 40 * s)
    pts = sorted({p for k in (-6, -3, -1, 0, 1, 3, 6) for p in [m + k * s, *[e + k * es for e, es in extra]] if lo < p < hi})
    val, err = integrate.quad(fun, lo, hi, points=pts or None, epsabs=0, epsrel=1e-13, limit=2000)
    assert err <= 1e-11 * max(abs(val), 1e-300) or err < 1e-18, (val, err)
    return val


def chance(ax, bx, ay, by):
    """P(X > Y) = ∫ f_Y(y) P(X > y) dy."""
    return quad(lambda y: stats.beta.pdf(y, ay, by) * stats.beta.sf(y, ax, bx), ay, by, [span(ax, bx)])


def loss(ax, bx, ay, by):
    """E[max(X − Y, 0)] = ∫ f_X(x) E[(x − Y)⁺] dx, E[(x − Y)⁺] = x F_Y(x) − E[Y] F_{Y+}(x)."""
    my = ay / (ay + by)
    g = lambda x: x * stats.beta.cdf(x, ay, by) - my * stats.beta.cdf(x, ay + 1, by)  # noqa: E731
    return quad(lambda x: stats.beta.pdf(x, ax, bx) * g(x), ax, bx, [span(ay, by)])


beta_chance = []
for ax, bx, ay, by in [
    (2.0, 1.0, 1.0, 1.0),
    (13.0, 90.0, 8.0, 95.0),
    (1081.0, 8921.0, 1001.0, 9001.0),
    (5201.0, 94801.0, 5001.0, 95001.0),
    (1.0, 100001.0, 3.0, 99999.0),
    (0.5, 20.5, 2.5, 30.5),
]:
    beta_chance.append({"input": [ax, bx, ay, by], "expected": f(chance(ax, bx, ay, by))})

bayes_props = []
for name, c, t, prior, alpha in [
    ("uniform prior", prop(10_000, 1_000), prop(10_000, 1_080), {"alpha": 1.0, "beta": 1.0}, 0.05),
    ("informative prior", prop(400, 30), prop(420, 41), {"alpha": 5.0, "beta": 45.0}, 0.1),
    ("treatment worse", prop(100_000, 5_000), prop(100_000, 4_900), {"alpha": 1.0, "beta": 1.0}, 0.05),
]:
    post = lambda s: (prior["alpha"] + s["conversions"], prior["beta"] + s["n"] - s["conversions"])  # noqa: E731
    ac, bc = post(c)
    at, bt = post(t)
    bayes_props.append(
        {
            "name": name,
            "input": {"control": c, "treatment": t, "prior": prior, "alpha": alpha},
            "expected": {
                "control_lower": f(stats.beta.ppf(alpha / 2, ac, bc)),
                "control_upper": f(stats.beta.isf(alpha / 2, ac, bc)),
                "treatment_lower": f(stats.beta.ppf(alpha / 2, at, bt)),
                "treatment_upper": f(stats.beta.isf(alpha / 2, at, bt)),
                "chance_to_beat": f(chance(at, bt, ac, bc)),
                "expected_loss_treatment": f(loss(ac, bc, at, bt)),
                "expected_loss_control": f(loss(at, bt, ac, bc)),
                "expected_relative_lift": f(at / (at + bt) * (ac + bc - 1) / (ac - 1) - 1),
            },
        }
    )

# ---------------------------------------------------------------- corrections
corrections = []
for p in [
    [0.01, 0.04, 0.03],
    [0.001, 0.02, 0.03, 0.5, 0.04],
    [0.2, 0.2, 0.01, 0.9, 0.049, 0.0001, 0.7],
    list(rng.uniform(0, 0.1, 12)),
]:
    corrections.append(
        {
            "input": [f(x) for x in p],
            "holm": [f(x) for x in multipletests(p, method="holm")[1]],
            "benjamini_hochberg": [f(x) for x in multipletests(p, method="fdr_bh")[1]],
        }
    )

# ---------------------------------------------------------------- SRM
srm = []
for counts, weights in [
    ([497_512, 502_488], [50.0, 50.5]),  # the 50/50.5 split at n = 1M, tested both ways
    ([497_512, 502_488], [1.0, 1.0]),
    ([5_050, 4_950], [0.5, 0.5]),
    ([33_100, 33_500, 33_400], [1.0, 1.0, 1.0]),
    ([9_000, 1_100], [90_000.0, 10_000.0]),
    ([250, 260, 245, 300, 230], [1.0, 1.0, 1.0, 1.0, 1.0]),
]:
    w = np.array(weights) / np.sum(weights)
    exp = np.sum(counts) * w
    res = stats.chisquare(counts, exp)
    srm.append(
        {
            "input": {"counts": counts, "weights": weights},
            "expected": {"chi_square": f(res.statistic), "p_value": f(res.pvalue), "mismatch": bool(res.pvalue < 0.001)},
        }
    )

# ---------------------------------------------------------------- power
zq = lambda a, pw: (stats.norm.isf(a / 2), stats.norm.isf(1 - pw))  # noqa: E731
power = {"sample_size_means": [], "sample_size_proportions": [], "mde_means": [], "mde_proportions": [], "power_means": []}
for base, var, mde, alpha, pw, k in [
    (0.0, 1.0, {"absolute": 0.1}, 0.05, 0.8, 1.0),
    (20.0, 225.0, {"relative": 0.02}, 0.05, 0.9, 1.0),
    (3.0, 4.0, {"absolute": -0.05}, 0.01, 0.8, 2.0),
]:
    za, zb = zq(alpha, pw)
    delta = mde.get("absolute", base * mde.get("relative", 0.0))
    n = (za + zb) ** 2 * var * (1 + 1 / k) / delta**2
    # statsmodels solves the same problem numerically (it also counts the
    # far tail, so agreement is only to a few digits).
    n_sm = NormalIndPower().solve_power(effect_size=abs(delta) / np.sqrt(var), alpha=alpha, power=pw, ratio=k)
    assert abs(n_sm / n - 1) < 1e-3, (n_sm, n)
    power["sample_size_means"].append(
        {"input": {"baseline_mean": base, "variance": var, "mde": mde, "alpha": alpha, "power": pw, "treatment_ratio": k},
         "expected": {"control_exact": f(n), "treatment_exact": f(n * k), "control": int(np.ceil(n)), "treatment": int(np.ceil(n * k))}}
    )


def prop_root(p1, d, za, zb, k):
    p2 = p1 + d
    pbar = (p1 + k * p2) / (1 + k)
    return za * np.sqrt(pbar * (1 - pbar) * (1 + 1 / k)) + zb * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / k)


for base, mde, alpha, pw, k in [
    (0.1, {"relative": 0.05}, 0.05, 0.8, 1.0),
    (0.02, {"absolute": 0.002}, 0.05, 0.9, 1.0),
    (0.5, {"absolute": -0.01}, 0.01, 0.8, 3.0),
]:
    za, zb = zq(alpha, pw)
    d = mde.get("absolute", base * mde.get("relative", 0.0))
    n = prop_root(base, d, za, zb, k) ** 2 / d**2
    power["sample_size_proportions"].append(
        {"input": {"baseline_rate": base, "mde": mde, "alpha": alpha, "power": pw, "treatment_ratio": k},
         "expected": {"control_exact": f(n), "treatment_exact": f(n * k), "control": int(np.ceil(n)), "treatment": int(np.ceil(n * k))}}
    )

for var, nc, nt, alpha, pw in [(1.0, 1570, 1570, 0.05, 0.8), (225.0, 50_000, 60_000, 0.05, 0.9), (4.0, 30, 25, 0.1, 0.8)]:
    za, zb = zq(alpha, pw)
    power["mde_means"].append(
        {"input": {"variance": var, "n_control": nc, "n_treatment": nt, "alpha": alpha, "power": pw},
         "expected": f((za + zb) * np.sqrt(var * (1 / nc + 1 / nt)))}
    )

for base, nc, nt, alpha, pw in [(0.1, 57_000, 57_000, 0.05, 0.8), (0.02, 10_000, 20_000, 0.05, 0.9), (0.5, 400, 400, 0.01, 0.8)]:
    za, zb = zq(alpha, pw)
    k = nt / nc
    g = lambda d: d * np.sqrt(nc) - prop_root(base, d, za, zb, k)  # noqa: E731
    root = optimize.brentq(g, 1e-12, 1 - base, xtol=1e-300, rtol=8.9e-16, maxiter=500)
    power["mde_proportions"].append(
        {"input": {"baseline_rate": base, "n_control": nc, "n_treatment": nt, "alpha": alpha, "power": pw}, "expected": f(root)}
    )

for var, nc, nt, effect, alpha in [(1.0, 1570, 1570, 0.1, 0.05), (4.0, 200, 300, -0.3, 0.1), (225.0, 10_000, 10_000, 0.2, 0.05)]:
    pw = NormalIndPower().power(effect_size=effect / np.sqrt(var), nobs1=nc, alpha=alpha, ratio=nt / nc)
    power["power_means"].append(
        {"input": {"variance": var, "n_control": nc, "n_treatment": nt, "effect": effect, "alpha": alpha}, "expected": f(pw)}
    )

# ---------------------------------------------------------------- write
doc = {
    "generated_by": "scripts/stats/generate_reference.py",
    "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__, "statsmodels": statsmodels.__version__},
    "welch": welch,
    "two_proportion_z": ztest,
    "relative_lift_means": lift_means,
    "relative_lift_proportions": lift_props,
    "ratio": ratio,
    "cuped": cuped,
    "cuped_ratio": cuped_ratio,
    "cuped_ratio_simulation": cuped_ratio_simulation,
    "sequential": sequential,
    "sequential_means": seq_means,
    "bayes_means": bayes_means,
    "beta_chance_to_beat": beta_chance,
    "bayes_proportions": bayes_props,
    "corrections": corrections,
    "srm": srm,
    "power": power,
}
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps(doc, indent=1) + "\n")
print(f"wrote {OUT.relative_to(ROOT)}")
