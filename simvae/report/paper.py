"""The paper's own figures ("A Probabilistic Model behind Self-Supervised Learning", Bizeul,
Schölkopf, Allen), transcribed from its tables, for the tables ``simvae reproduce`` writes beside ours.

Each entry is "mean ± standard error over three runs" as printed, in percent for accuracies, NMI
and ARI, per pixel (images in [0, 1]) for the MSE, and the FID as printed. ``None`` marks a cell
the paper leaves empty ("-" / "—"). ``paper_value(table_key, metric, method, dataset)`` returns
(mean, se) in simvae's units (fractions for accuracies, NMI and ARI), or None.
"""

from __future__ import annotations

DATASETS = ("mnist", "fashion-mnist", "celeba", "cifar10")  # the paper's column order
METHOD_LABELS = {
    "random": "Random",
    "simclr": "SimCLR",
    "moco": "MoCo",
    "mocov2": "MoCo v2",
    "vicreg": "VICReg",
    "vae": "VAE",
    "beta-vae": "β-VAE",
    "cr-vae": "CR-VAE",
    "simvae": "SimVAE",
}
DISCRIMINATIVE = ("simclr", "moco", "mocov2", "vicreg")
GENERATIVE_BASELINES = ("vae", "beta-vae", "cr-vae")

# Each row: the four data sets in DATASETS order, "mean±se" or "-" (not reported).
_TABLE1_MP = {  # Table 1, Acc-MP: MLP probe, top-1 %
    "random": "38.1±3.8 49.8±0.8 83.5±1.0 16.3±0.4",
    "simclr": "97.2±0.0 74.9±0.2 93.7±0.4 67.4±0.1",
    "moco": "78.6±1.2 65.1±0.4 91.2±0.1 56.4±1.6",
    "mocov2": "94.6±0.4 71.2±0.1 91.7±0.1 56.4±1.6",
    "vicreg": "96.7±0.0 73.2±0.1 94.7±0.1 69.7±0.0",
    "vae": "97.8±0.1 80.2±0.3 89.0±0.5 30.3±0.4",
    "beta-vae": "98.0±0.0 82.2±0.1 93.4±0.4 36.6±0.1",
    "cr-vae": "97.7±0.0 82.6±0.0 93.1±0.4 36.8±0.0",
    "simvae": "98.4±0.0 82.1±0.0 95.6±0.4 51.8±0.0",
}
_TABLE1_KNN = {  # Table 1, Acc-k-NN, top-1 %
    "random": "46.1±2.5 66.5±0.4 80.0±0.9 13.1±0.6",
    "simclr": "97.2±0.1 76.0±0.1 91.6±0.3 64.0±0.0",
    "moco": "94.6±0.3 76.9±0.2 87.9±0.1 54.0±2.0",
    "mocov2": "94.6±0.3 76.9±0.2 88.8±0.4 54.0±2.0",
    "vicreg": "97.0±0.0 76.0±0.1 92.7±0.4 68.3±0.0",
    "vae": "98.0±0.1 83.7±0.2 86.9±0.7 25.6±0.5",
    "beta-vae": "98.3±0.0 86.1±0.0 92.0±0.1 28.5±0.1",
    "cr-vae": "98.0±0.0 86.4±0.0 91.6±0.6 28.1±0.1",
    "simvae": "98.5±0.0 86.5±0.0 93.2±0.1 47.1±0.0",
}
_TABLE5_LP = {  # Table 5 (Appendix A.8), Acc-LP: linear probe, top-1 % (no MoCo v2 row)
    "random": "39.7±2.4 51.2±0.6 64.4±0.9 15.7±0.9",
    "simclr": "96.8±0.1 73.0±0.3 94.2±0.2 65.4±0.1",
    "moco": "88.6±1.7 65.0±1.3 - 53.3±1.3",
    "vicreg": "96.7±0.0 71.7±0.1 94.3±0.3 68.2±0.0",
    "vae": "97.2±0.2 79.0±0.5 81.5±1.0 24.7±0.4",
    "beta-vae": "97.8±0.0 79.6±0.0 81.9±0.2 26.9±0.0",
    "cr-vae": "97.5±0.0 79.7±0.0 81.6±0.3 26.8±0.0",
    "simvae": "98.0±0.0 80.0±0.0 87.1±0.3 40.1±0.0",
}
_TABLE5_GMM = {  # Table 5, Acc-GMM: Gaussian mixture clustering accuracy, %
    "random": "42.2±1.2 48.6±0.2 59.2±0.3 13.1±0.6",
    "simclr": "83.7±0.6 53.6±0.3 71.6±0.6 28.2±0.2",
    "moco": "70.5±4.0 56.6±1.1 - 52.4±0.3",
    "vicreg": "79.8±0.6 60.2±1.1 53.9±0.2 35.0±2.8",
    "vae": "96.3±0.4 57.9±0.8 58.8±0.2 23.4±0.0",
    "beta-vae": "96.2±0.2 68.0±0.3 59.5±0.6 31.2±0.1",
    "cr-vae": "96.9±0.0 63.4±0.4 58.9±0.4 30.3±0.0",
    "simvae": "96.6±0.0 71.1±0.0 58.4±0.6 39.3±0.0",
}
_TABLE6_ARI = {  # Table 6 (Appendix A.8), ARI of the GMM, % (no Random or MoCo v2 column)
    "vae": "89.0±1.0 44.3±0.9 5.7±0.2 0.6±0.0",
    "beta-vae": "93.3±0.3 53.3±0.4 6.2±0.7 2.9±0.1",
    "cr-vae": "94.0±0.0 47.6±0.4 6.6±0.9 2.0±0.0",
    "simvae": "93.1±0.0 56.8±0.0 2.6±0.7 12.2±0.1",
    "moco": "58.3±3.8 30.9±0.5 - 27.2±1.0",
    "vicreg": "72.0±0.7 41.2±0.5 18.7±0.8 25.7±0.2",
    "simclr": "77.4±0.2 33.2±0.3 0.0±0.1 52.2±0.1",
}
_TABLE6_NMI = {  # Table 6, NMI of the GMM, %
    "vae": "94.9±0.4 69.1±0.6 3.9±0.2 31.7±0.0",
    "beta-vae": "96.7±0.2 75.6±0.1 4.7±0.9 33.5±0.1",
    "cr-vae": "96.9±0.0 72.6±0.1 5.0±0.7 32.4±0.0",
    "simvae": "96.6±0.0 77.1±0.0 2.9±0.7 42.8±0.1",
    "moco": "71.4±2.5 50.4±0.6 - 16.5±0.4",
    "vicreg": "86.8±0.4 66.9±0.3 24.3±0.3 55.3±0.1",
    "simclr": "89.6±0.1 62.1±0.2 0.0±0.0 21.7±0.1",
}
_TABLE7_MSE = {  # Table 7 (Appendix A.8), reconstruction MSE (lower is better); every SE printed as 0.0
    "vae": "0.029±0.0 0.012±0.0 0.016±0.0 0.008±0.0",
    "beta-vae": "0.029±0.0 0.008±0.0 0.005±0.0 0.004±0.0",
    "cr-vae": "0.030±0.0 0.008±0.0 0.005±0.0 0.004±0.0",
    "simvae": "0.026±0.0 0.009±0.0 0.004±0.0 0.003±0.0",
}
_TABLE7_FID = {  # Table 7, FID of class-conditional samples (lower is better)
    "vae": "150.1±0.2 99.4±0.6 162.9±2.8 365.4±3.3",
    "beta-vae": "155.3±0.5 99.9±0.7 163.8±2.3 376.7±1.7",
    "cr-vae": "153.0±0.9 98.7±0.0 159.3±5.4 374.4±0.4",
    "simvae": "152.7±0.3 96.1±1.0 157.8±2.3 349.9±2.1",
}

# metric key -> (the paper's table, its rows, whether the printed figure is a percentage)
PAPER_TABLES = {
    "mlp_acc": ("Table 1", _TABLE1_MP, True),
    "knn_acc": ("Table 1", _TABLE1_KNN, True),
    "linear_acc": ("Table 5", _TABLE5_LP, True),
    "gmm_acc": ("Table 5", _TABLE5_GMM, True),
    "gmm_ari": ("Table 6", _TABLE6_ARI, True),
    "gmm_nmi": ("Table 6", _TABLE6_NMI, True),
    "recon_mse": ("Table 7", _TABLE7_MSE, False),
    "fid": ("Table 7", _TABLE7_FID, False),
}

PAPER_BUDGET = (
    "paper: 400 epochs for the generative methods and 600-800 for the discriminative ones (A.7.5), Adam, "
    "128 samples per step for every method and J (A.7.4), the full training sets; probes Adam 3e-4, "
    "batch 128, 200 epochs; k-NN k = 1..15, best reported; GMM with 200 initialisations (A.7.5); "
    "FID of class-conditional samples (A.7.6); mean ± standard error over three runs"
)

STYLE_IN_PAPER = (
    "the paper reports style on MNIST, Fashion-MNIST and CIFAR-10 only qualitatively (reconstructions, "
    "Figs. 3-4), and CelebA hair colour and the 20 attributes only as plots (Figs. 5-6): no figures "
    "to set beside these"
)

# The paper's statements the claims test (section 7, Appendix A.8).
STATEMENTS = {
    "H1": "SimVAE achieves self-supervised learning if distributions can be well modelled: it outperforms the "
    "discriminative methods on content for the simple data sets (section 7, Table 1)",
    "H2": "SimVAE retains more style information than discriminative objectives (section 5; Figs. 3-6)",
    "H3": "SimVAE learns better performing representations than other VAE-based objectives (section 7, Table 1)",
    "T7": "small but significant improvements in FID score and reconstruction error relative to previous VAE methods (section 7, Table 7)",
}


def _parse(cell: str) -> tuple[float, float] | None:
    if cell in ("-", "—"):
        return None
    mean, se = cell.split("±")
    return float(mean), float(se)


def paper_value(metric: str, method: str, dataset: str) -> tuple[float, float] | None:
    """The paper's (mean, se) of ``metric`` for ``method`` on ``dataset``, in simvae's units (fractions
    for accuracies, NMI, ARI), or None where the paper reports none."""
    if metric not in PAPER_TABLES or dataset not in DATASETS:
        return None
    _, rows, percent = PAPER_TABLES[metric]
    row = rows.get(method)
    if row is None:
        return None
    cell = _parse(row.split()[DATASETS.index(dataset)])
    if cell is None:
        return None
    return (cell[0] / 100, cell[1] / 100) if percent else cell


def paper_text(metric: str, method: str, dataset: str) -> str | None:
    """The paper's cell as printed ("82.1 ± 0.0"), or None where it reports none."""
    if metric not in PAPER_TABLES or dataset not in DATASETS:
        return None
    row = PAPER_TABLES[metric][1].get(method)
    if row is None:
        return None
    cell = row.split()[DATASETS.index(dataset)]
    return None if cell in ("-", "—") else cell.replace("±", " ± ")


def paper_methods(metric: str) -> list[str]:
    """The methods the paper reports ``metric`` for."""
    return list(PAPER_TABLES[metric][1]) if metric in PAPER_TABLES else []


def paper_table(metric: str) -> str | None:
    """Which of the paper's tables reports ``metric`` ("Table 1"), or None."""
    return PAPER_TABLES[metric][0] if metric in PAPER_TABLES else None
