"""Component: the ONNX export, its manifest, generate without MXNet, re-export."""
import json

import numpy as onp
import pytest

from conftest import assert_one_line_error, run_cli


@pytest.mark.cli
def test_export_has_onnx_and_a_full_manifest(tiny_run):
    out, _ = tiny_run
    export = out / 'export'
    manifest = json.loads((export / 'manifest.json').read_text())
    assert manifest['latent_dim'] == 100
    assert manifest['output_shape'] == ['N', 3, 64, 64]
    assert manifest['output_range'] == [-1.0, 1.0] and 'to_pixels' in manifest
    assert set(manifest['files']) == {'generator-symbol.json', 'generator-0000.params',
                                      'generator.onnx'}
    from gluon_dcgan.export.mxnet_export import sha256_of
    for name, digest in manifest['files'].items():
        assert sha256_of(export / name) == digest
    assert manifest['onnx']['verified_max_abs_diff'] <= 1e-4
    assert manifest['versions']['mxnet'] == '1.9.1'


@pytest.mark.cli
def test_onnx_has_a_dynamic_batch_and_no_weight_inputs(tiny_run):
    import onnx
    out, _ = tiny_run
    model = onnx.load(str(out / 'export' / 'generator.onnx'))
    assert [i.name for i in model.graph.input] == ['data']
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim0.HasField('dim_value')  # symbolic: any batch size


@pytest.mark.cli
def test_generate_onnx_runs_without_mxnet_and_matches(tiny_run, tmp_path):
    out, _ = tiny_run
    blocker = tmp_path / 'block' / 'mxnet'
    blocker.mkdir(parents=True)
    (blocker / '__init__.py').write_text("raise ImportError('mxnet is blocked for this test')")
    env = {'PYTHONPATH': str(tmp_path / 'block')}
    onnx_png, mx_png = tmp_path / 'onnx.png', tmp_path / 'mx.png'
    proc = run_cli(['generate', '--export', str(out / 'export'), '--onnx', '--num', '9',
                    '--seed', '4', '--output', str(onnx_png)], env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(['generate', '--export', str(out / 'export'), '--num', '9', '--seed', '4',
                    '--output', str(mx_png)], env=env)
    assert proc.returncode != 0  # proves the block works: the MXNet path needs mxnet
    from gluon_dcgan.tools import latent
    from gluon_dcgan.export import load
    Z = latent.latent_noise(9, 100, seed=4)
    onnx_out, _ = load.generate_onnx(str(out / 'export'), Z)
    mx_out = load.generate_mxnet(str(out / 'export'), Z)
    assert onnx_out.shape == (9, 3, 64, 64)
    assert onp.abs(onnx_out - mx_out).max() <= 1e-4


@pytest.mark.cli
def test_reexport_from_checkpoint(tiny_run, tmp_path):
    out, _ = tiny_run
    proc = run_cli(['export', '--run', str(out), '--out', str(tmp_path / 'again')])
    assert proc.returncode == 0, proc.stderr
    from gluon_dcgan.tools import latent
    from gluon_dcgan.export import load
    Z = latent.latent_noise(3, 100, seed=1)
    a = load.generate_mxnet(str(out / 'export'), Z)
    b = load.generate_mxnet(str(tmp_path / 'again'), Z)
    assert onp.abs(a - b).max() < 1e-6


@pytest.mark.unit
def test_export_of_a_non_run_is_one_line(tmp_path, main_in_process):
    assert_one_line_error(main_in_process(['export', '--run', str(tmp_path)]),
                          contains='not a run')


def _swap_in_net_G_of_width(ckpt, n_G):
    """net_G.params of an `n_G`-wide generator into `ckpt`, its manifest re-hashed."""
    import hashlib
    import mxnet as mx
    from gluon_dcgan.model import build_net_G
    net = build_net_G(n_G)
    net.initialize(mx.init.Normal(0.02))
    net(mx.np.zeros((1, 100, 1, 1)))
    net.save_parameters(str(ckpt / 'net_G.params'))
    names = json.loads((ckpt / 'manifest.json').read_text())
    (ckpt / 'manifest.json').write_text(json.dumps(
        {n: hashlib.sha256((ckpt / n).read_bytes()).hexdigest() for n in names}))


@pytest.mark.cli
def test_export_skips_a_checkpoint_whose_weights_do_not_fit_its_state(tiny_run, tmp_path,
                                                                      main_in_process):
    # The hostile probe's finding 8: weights of a run of another width in the newest
    # checkpoint (manifest re-hashed) ended export --run in an AssertionError traceback.
    import shutil
    run = tmp_path / 'run'
    shutil.copytree(tiny_run[0], run, ignore=shutil.ignore_patterns('export'))
    ckpts = run / 'checkpoints'
    _swap_in_net_G_of_width(ckpts / 'ckpt-E0002-B000000', 32)  # the run's is 16 wide
    proc = main_in_process(['export', '--run', run, '--out', tmp_path / 'e1'])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f'warning: checkpoint {ckpts / "ckpt-E0002-B000000"} is '
                                  f'damaged (net_G.params does not fit the model of its '
                                  f'state.json'), proc.stderr
    assert f'exported {ckpts / "ckpt-E0001-B000000"} to ' in proc.stdout + proc.stderr
    assert (tmp_path / 'e1' / 'manifest.json').exists()
    _swap_in_net_G_of_width(ckpts / 'ckpt-E0001-B000000', 32)  # none intact is left
    proc = main_in_process(['export', '--run', run, '--out', tmp_path / 'e2'])
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert [l for l in lines if not l.startswith('warning: ')] == [
        f'error: no checkpoint in {ckpts} is intact (the warnings above say why): nothing to '
        f'export; train the run again with --overwrite'], proc.stderr
    assert len(lines) == 3 and not (tmp_path / 'e2').exists()
