"""Reconstruction error (paper Table 7, A.7.6): the test images decoded from their representation.

``recon_mse``: the squared error per pixel with images in [0, 1], averaged over pixels and test
images; the decoder's pixel means (Bernoulli decoders: the sigmoid of their logits). Methods
without a decoder of their own are reconstructed by the post-hoc decoder fitted on their frozen
representation (``decoder_fit.py``), whose own validation error is reported beside. The
reconstructions are handed on to the report (``Evaluation.artefacts["test_recon"]``).
"""

from __future__ import annotations

from .registry import Metric, register_evaluator


@register_evaluator(
    "reconstruction",
    "run",
    metrics=(
        Metric("recon_mse", "recon. MSE", "number", higher_is_better=False, headline=True, note="per pixel, images in [0, 1], test set"),
        Metric("posthoc_decoder_val_mse", "post-hoc decoder validation MSE", "number", higher_is_better=False, in_report=False),
    ),
)
def reconstruction_evaluator(run, evaluation, cfg, log) -> dict:
    """Reconstruction MSE of the test set where the run has a decoder (own or post-hoc); {} otherwise."""
    data = run.data
    recon = run.reconstruct(data.test_images)
    if recon is None:
        return {}
    evaluation.artefacts["test_recon"] = recon
    out = {"recon_mse": float((recon - data.test_images.float() / 255).pow(2).mean())}
    decoder = getattr(run.method, "posthoc_decoder", None)
    if decoder is not None:
        epochs = int(getattr(decoder, "epochs", 0))
        out["posthoc_decoder_val_mse"] = float(getattr(decoder, "val_mse", float("nan")))
        out["posthoc_decoder_epochs"] = epochs
        out["posthoc_decoder_capped"] = bool(epochs and epochs == getattr(decoder, "max_epochs", -1))
    log(f"reconstruction: MSE {out['recon_mse']:.5f} per pixel on {len(recon)} test images")
    return out
