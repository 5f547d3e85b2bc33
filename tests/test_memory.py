"""The memory estimate: the parameter counts it starts from, the defaults it passes, and
nets too large for the machine refused before the run folder exists."""
import pytest

from conftest import SYNTHETIC, assert_one_line_error, run_cli


@pytest.mark.unit
@pytest.mark.parametrize('n_G, n_D, latent, channels', [(64, 64, 100, 3), (8, 16, 7, 1),
                                                        (24, 40, 100, 3)])
def test_parameter_counts_match_the_built_nets(n_G, n_D, latent, channels):
    import mxnet as mx
    from mxnet import np

    from gluon_dcgan.memory import parameter_counts
    from gluon_dcgan import model
    net_G, net_D = model.net_G(n_G, channels), model.net_D(n_D)
    for net in (net_G, net_D):
        net.initialize(mx.init.Normal(0.02))
    net_D(net_G(np.zeros((1, latent, 1, 1))))
    assert parameter_counts(n_G, n_D, latent, channels) == (model.count_parameters(net_G),
                                                            model.count_parameters(net_D))
    if (n_G, n_D, latent, channels) == (64, 64, 100, 3):
        assert parameter_counts(64, 64, 100, 3) == (3576704, 2765696)


@pytest.mark.unit
def test_memory_estimate_passes_the_defaults_and_refuses_huge_nets(monkeypatch):
    from gluon_dcgan import memory
    from gluon_dcgan.errors import UserError
    assert 1e9 < memory.training_memory_bytes(64, 64, 100, 3, 256) < 2.2e9  # peak: 2.2 GB
    monkeypatch.setattr(memory, 'available_memory_bytes', lambda: 4 * 2 ** 30)
    memory.check_training_memory(64, 64, 100, 3, 256, 'cpu')
    with pytest.raises(UserError, match=r'--n-G 4096 .* need about 199.8 GiB .* only 4.0 GiB'):
        memory.check_training_memory(4096, 64, 100, 3, 256, 'cpu')
    memory.check_training_memory(4096, 64, 100, 3, 256, 'gpu')  # the card's memory counts
    monkeypatch.setattr(memory, 'available_memory_bytes', lambda: None)  # not Linux
    memory.check_training_memory(4096, 64, 100, 3, 256, 'cpu')


@pytest.mark.cli
def test_a_net_too_large_for_memory_is_refused_before_the_run_folder_exists(tmp_path):
    out = tmp_path / 'out'
    proc = run_cli(SYNTHETIC + ['--n-G', '100000', '--out-dir', str(out)], timeout=120)
    assert_one_line_error(proc, contains='GiB to train')
    assert not out.exists()
