"""--network mlp|conv for any method and data set."""

import pytest

from simvae.errors import ConfigError
from simvae.methods import build_method
from simvae.run_config import build_run_config, model_spec


@pytest.mark.parametrize("method", ["simvae", "simclr", "vae"])
def test_network_overrides_the_data_sets_preset(method):
    run = build_run_config({"train": {"dataset": "cifar10", "method": method, "network": "mlp"}})
    spec = model_spec(run, (3, 32, 32))
    assert spec.network == "mlp" and spec.latent_dim == 64
    net = build_method(method, spec, run.to_dict()["method"])
    assert type(net.encoder).__name__ == "MLPEncoder"
    run = build_run_config({"train": {"dataset": "cifar10", "method": method}})
    assert model_spec(run, (3, 32, 32)).network == "conv"


def test_conv_on_28x28_images_is_refused_in_one_line():
    run = build_run_config({"train": {"dataset": "fashion-mnist", "network": "conv"}})
    with pytest.raises(ConfigError, match="takes square 32x32 or 64x64 images; fashion-mnist has 28x28: use --network mlp"):
        model_spec(run, (1, 28, 28))
    with pytest.raises(ConfigError, match="network"):
        build_run_config({"train": {"network": "resnet"}})
