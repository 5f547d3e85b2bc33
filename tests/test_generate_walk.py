"""The latent walk: slerp (unit), and `generate --interpolate` end to end (MXNet and ONNX)."""
import numpy as onp
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli
from gluon_dcgan.tools import latent
from gluon_dcgan.export import load

TILE, PAD = 64, 2  # the export's image size and images.grid's padding


def _angle(u, v):
    u, v = u.ravel().astype(onp.float64), v.ravel().astype(onp.float64)
    return onp.arccos(onp.clip(u @ v / onp.linalg.norm(u) / onp.linalg.norm(v), -1, 1))


@pytest.mark.unit
def test_slerp_ends_are_exact_and_steps_are_equal_angles():
    z = latent.latent_noise(2, 100, seed=7)
    path = latent.slerp(z[0], z[1], onp.linspace(0, 1, 9))
    assert path.shape == (9, 100, 1, 1) and path.dtype == onp.float32
    assert onp.array_equal(path[0], z[0]) and onp.array_equal(path[-1], z[1])
    steps = [_angle(path[i], path[i + 1]) for i in range(8)]
    assert onp.allclose(steps, _angle(z[0], z[1]) / 8, atol=1e-5)
    norms = onp.linalg.norm(path.reshape(9, -1), axis=1)  # linear from |z0| to |z1|
    assert onp.allclose(norms, onp.linspace(norms[0], norms[-1], 9), rtol=1e-5)


@pytest.mark.unit
def test_slerp_keeps_the_norm_of_equal_norm_ends_and_lerp_does_not():
    a, b = onp.random.RandomState(1).normal(size=(2, 100))
    b *= onp.linalg.norm(a) / onp.linalg.norm(b)
    path = latent.slerp(a, b, onp.linspace(0, 1, 11))
    assert onp.allclose(onp.linalg.norm(path, axis=1), onp.linalg.norm(a), rtol=1e-9)
    # the straight line's midpoint of two near-orthogonal Gaussians is about 1/sqrt(2) as long
    assert onp.linalg.norm((a + b) / 2) < 0.8 * onp.linalg.norm(a)


@pytest.mark.unit
def test_slerp_of_parallel_ends_is_the_straight_line():
    a = onp.arange(1, 5, dtype=onp.float64)
    path = latent.slerp(a, 3 * a, [0, 0.5, 1])
    assert onp.allclose(path, [a, 2 * a, 3 * a])


@pytest.mark.unit
def test_latent_walk_rows_come_walk_by_walk():
    Z = latent.latent_walk(3, 5, 10, seed=2)
    ends = latent.latent_noise(6, 10, seed=2)
    assert Z.shape == (15, 10, 1, 1)
    for k in range(3):
        assert onp.array_equal(Z[5 * k], ends[2 * k])
        assert onp.array_equal(Z[5 * k + 4], ends[2 * k + 1])


def _walk(export, output, run=run_cli):
    proc = run(['generate', '--export', str(export), '--interpolate', '4', '--steps', '8',
                '--seed', '5', '--output', str(output)])
    assert proc.returncode == 0, proc.stderr
    return output.read_bytes(), output.with_suffix('.gif').read_bytes()


@pytest.mark.cli
def test_walk_grid_gif_and_determinism(tiny_run, tmp_path, main_in_process):
    export = tiny_run[0] / 'export'
    first = _walk(export, tmp_path / 'a.png')
    # same seed: same bytes, PNG and GIF (again in this process: conftest.main_in_process)
    assert first == _walk(export, tmp_path / 'b.png', main_in_process)
    png = Image.open(tmp_path / 'a.png')
    assert png.size == (8 * (TILE + PAD) + PAD, 4 * (TILE + PAD) + PAD)  # 8 columns, 4 rows
    gif = Image.open(tmp_path / 'a.gif')
    assert gif.n_frames == 8
    assert gif.size == (2 * (TILE + PAD) + PAD,) * 2  # each frame: the 4 walks, 2x2


@pytest.mark.cli
def test_walk_from_onnx_without_mxnet_matches_mxnet(tiny_run, tmp_path):
    export = tiny_run[0] / 'export'
    blocker = tmp_path / 'block' / 'mxnet'
    blocker.mkdir(parents=True)
    (blocker / '__init__.py').write_text("raise ImportError('mxnet is blocked for this test')")
    proc = run_cli(['generate', '--export', str(export), '--onnx', '--interpolate', '4',
                    '--steps', '8', '--output', str(tmp_path / 'o.png')],
                   env={'PYTHONPATH': str(tmp_path / 'block')})
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / 'o.gif').n_frames == 8
    Z = latent.latent_walk(4, 8, 100, seed=0)
    onnx_out, _ = load.generate_onnx(str(export), Z)
    mx_out = load.generate_mxnet(str(export), Z)
    assert onnx_out.shape == (32, 3, 64, 64)
    assert onp.abs(onnx_out - mx_out).max() <= 1e-4


@pytest.mark.unit
@pytest.mark.parametrize('flags, contains', [
    (['--interpolate', '2', '--steps', '1'], 'must be >= 2'),
    (['--interpolate', '0'], 'must be >= 1'),
    (['--steps', '4'], 'add --interpolate'),
    (['--interpolate', '2', '--num', '4'], 'pick one'),
    (['--interpolate', '100', '--steps', '101'], 'lower either'),
    (['--onnx', '--ctx', 'gpu'], 'drop one of them'),  # --ctx was ignored with --onnx
])
def test_bad_walk_flags_are_one_line(tmp_path, flags, contains, main_in_process):
    proc = main_in_process(['generate', '--export', str(tmp_path), '--output',
                            str(tmp_path / 'w.png')] + flags)
    assert_one_line_error(proc, contains=contains)
    assert not list(tmp_path.iterdir())
