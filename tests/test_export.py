"""Component: the ONNX export, its manifest, generate without MXNet, re-export; and where
export --run may write: never over a run folder, a link or a folder of the user's; an
export (and its sub-exports) replaced whole; a read-only run exported elsewhere."""
import json
import os
import shutil
import subprocess
import sys

import numpy as onp
import pytest

from conftest import RUN_PY, assert_one_line_error, run_cli, snapshot, unprivileged
from gluon_dcgan.errors import UserError
from gluon_dcgan.export.mxnet_export import check_target


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
    from gluon_dcgan.model import net_G
    net = net_G(n_G)
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


@pytest.mark.cli
def test_export_refuses_the_run_folder_a_foreign_folder_and_a_file(seeded_copy, tmp_path,
                                                                   main_in_process):
    before = snapshot(seeded_copy)
    line = assert_one_line_error(main_in_process(['export', '--run', str(seeded_copy), '--out',
                                                  str(seeded_copy)]), contains='is a run folder')
    assert str(seeded_copy / 'export') in line
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('keep me')
    assert_one_line_error(main_in_process(['export', '--run', str(seeded_copy), '--out',
                                           str(mine)]),
                          contains='not part of an export (notes.txt)')
    assert (mine / 'notes.txt').read_text() == 'keep me'
    (tmp_path / 'afile').write_text('x')
    assert_one_line_error(main_in_process(['export', '--run', str(seeded_copy), '--out',
                                           str(tmp_path / 'afile')]), contains='is a file')
    assert (tmp_path / 'afile').read_text() == 'x'
    assert snapshot(seeded_copy) == before


@pytest.mark.cli
def test_export_replaces_an_export_and_keeps_its_sub_exports(seeded_copy, tmp_path):
    target = tmp_path / 'exp'
    shutil.copytree(seeded_copy / 'export', target)
    shutil.copytree(seeded_copy / 'export', target / 'best')
    (target / 'generator.onnx').unlink()  # a partial export is still an export to replace
    proc = run_cli(['export', '--run', str(seeded_copy), '--out', str(target)])
    assert proc.returncode == 0, proc.stderr
    assert (target / 'generator.onnx').exists() and (target / 'best' / 'manifest.json').exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.exp.partial')]


@pytest.mark.cli
def test_export_refuses_a_config_json_that_disagrees_with_the_checkpoint(seeded_copy,
                                                                         main_in_process):
    config = json.loads((seeded_copy / 'config.json').read_text())
    config['n_G'] = 32
    (seeded_copy / 'config.json').write_text(json.dumps(config))
    line = assert_one_line_error(main_in_process(['export', '--run', str(seeded_copy)]),
                                 contains='disagree')
    assert 'n_G 16 vs 32' in line


@pytest.mark.cli
def test_a_read_only_run_can_be_exported_elsewhere(seeded_copy, tmp_path):
    modes = {}
    for top, _, files in os.walk(seeded_copy):
        for path in [top] + [os.path.join(top, f) for f in files]:
            modes[path] = os.stat(path).st_mode
            os.chmod(path, modes[path] & ~0o222)
    try:
        before = snapshot(seeded_copy)
        proc = subprocess.run(unprivileged() + [sys.executable, RUN_PY, 'export', '--run',
                                                str(seeded_copy), '--out', str(tmp_path / 'exp')],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / 'exp' / 'manifest.json').exists()
        assert snapshot(seeded_copy) == before
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)


def _a_users_folder_and_a_link_to_it(tmp_path, name):
    """tmp_path/`name` holding sub/precious.txt, and tmp_path/link: a symbolic link to it."""
    mine = tmp_path / name
    (mine / 'sub').mkdir(parents=True)
    (mine / 'sub' / 'precious.txt').write_text('keep')
    os.symlink(mine, tmp_path / 'link')
    return mine


@pytest.mark.cli
def test_an_export_target_that_is_a_link_or_holds_other_folders_is_refused(one_epoch_run, tmp_path):
    mine = _a_users_folder_and_a_link_to_it(tmp_path, 'mine')
    with pytest.raises(UserError, match='symbolic link'):
        check_target(str(tmp_path / 'link'))
    with pytest.raises(UserError, match=r'not part of an export \(sub\)'):
        check_target(str(mine))
    both = tmp_path / 'both'  # an export with a sub-export (export/best/) may be replaced
    shutil.copytree(one_epoch_run / 'export', both)
    shutil.copytree(one_epoch_run / 'export', both / 'best')
    check_target(str(both))
    os.symlink(mine / 'sub', both / 'linked')  # but not with a link to a user's folder
    with pytest.raises(UserError, match=r'\(linked\)'):
        check_target(str(both))


@pytest.mark.cli
def test_export_into_a_symlinked_folder_deletes_nothing(one_epoch_run, tmp_path):
    mine = _a_users_folder_and_a_link_to_it(tmp_path, 'u')
    assert_one_line_error(run_cli(['export', '--run', str(one_epoch_run), '--out',
                                   str(tmp_path / 'link')]), contains='symbolic link')
    assert (mine / 'sub' / 'precious.txt').read_text() == 'keep'


@pytest.mark.cli
def test_a_long_export_name_fits(one_epoch_run, tmp_path):
    out = tmp_path / ('e' * 240)
    proc = run_cli(['export', '--run', str(one_epoch_run), '--out', str(out)])
    assert proc.returncode == 0, proc.stderr
    assert (out / 'manifest.json').exists()
    assert sorted(os.listdir(tmp_path)) == [out.name]  # no temporary folder left


@pytest.mark.cli
def test_export_into_a_run_folder_in_use_is_refused(one_epoch_run, tmp_path):
    other = tmp_path / 'other'
    shutil.copytree(one_epoch_run, other)
    holder = subprocess.Popen(  # holds other/ as a training run would, until stdin closes
        [sys.executable, '-c', 'import sys; from gluon_dcgan.train import rundir; '
         f'rundir.lock({str(other)!r}); print("held", flush=True); sys.stdin.read()'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        before = snapshot(other)
        assert_one_line_error(run_cli(['export', '--run', str(one_epoch_run), '--out',
                                       str(other / 'export')]),
                              contains=f'in use by another gluon_dcgan process (PID {holder.pid})')
        assert snapshot(other) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
