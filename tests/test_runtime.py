"""The process MXNet runs in, checked before MXNet loads: environment variables it would
crash or hang on, a stray DMLC_ROLE, a GPU build without its driver; and --ctx's devices."""
import pytest

from conftest import SYNTHETIC, assert_one_line_error, fake_mxnet_without_driver, run_cli


@pytest.mark.unit
def test_ctx_ids_are_parsed_strictly():
    from gluon_dcgan.runtime import parse_ctx_spec
    assert parse_ctx_spec('cpu') == ('cpu', [0])
    assert parse_ctx_spec(' CPU:0, 1 ') == ('cpu', [0, 1])
    assert parse_ctx_spec('gpu:1023') == ('gpu', [1023])


ENVIRONMENT_CASES = {
    # name: (value, what the one line says)
    'OMP_NUM_THREADS': [('2,1', 'not a whole number'), ('\u0662', 'not a whole number'),
                        ('0', 'out of range'), ('100000', 'out of range'),
                        ('abc', 'not a whole number')],
    'MXNET_CPU_WORKER_NTHREADS': [('100000', 'out of range'), ('-1', 'not a whole number')],
    'MXNET_CPU_TEMP_COPY': [('0', 'out of range'), ('-1', 'not a whole number'),
                            ('abc', 'not a whole number')],
    'MXNET_CPU_PARALLEL_RAND_COPY': [('0', 'out of range')],  # a segfault
    'MXNET_MKLDNN_ENABLED': [('abc', 'set it to 0 or 1'), ('yes', 'set it to 0 or 1'),
                             (' 1', 'set it to 0 or 1')],
}


@pytest.mark.unit
@pytest.mark.parametrize('name, value, expected', [(n, v, e) for n, cases in
                                                   ENVIRONMENT_CASES.items() for v, e in cases])
def test_environment_mxnet_would_crash_on_is_refused(name, value, expected, monkeypatch):
    from gluon_dcgan.errors import UserError
    from gluon_dcgan.runtime import check_environment
    monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as err:
        check_environment()
    assert f'{name}={value!r}' in str(err.value) and expected in str(err.value)
    assert '\n' not in str(err.value)


@pytest.mark.unit
@pytest.mark.parametrize('name, value', [('OMP_NUM_THREADS', ' 2 '), ('OMP_NUM_THREADS', '1024'),
                                         ('MXNET_CPU_TEMP_COPY', '1'),
                                         ('MXNET_MKLDNN_ENABLED', 'TRUE'),
                                         ('MXNET_MKLDNN_ENABLED', 'false'),
                                         ('MXNET_MKLDNN_ENABLED', '')])
def test_environment_mxnet_reads_is_accepted(name, value, monkeypatch):
    from gluon_dcgan.runtime import check_environment
    monkeypatch.setenv(name, value)
    check_environment()


@pytest.mark.unit
def test_environment_is_refused_before_the_run_folder(tmp_path, monkeypatch, main_in_process):
    monkeypatch.setenv('MXNET_CPU_TEMP_COPY', '0')
    proc = main_in_process(SYNTHETIC + ['--out-dir', str(tmp_path / 'out')])
    assert_one_line_error(proc, contains="MXNET_CPU_TEMP_COPY='0'")
    assert not (tmp_path / 'out').exists()


@pytest.mark.cli
@pytest.mark.parametrize('name, value', [('OMP_NUM_THREADS', 'abc'),
                                         ('MXNET_ENGINE_TYPE', 'Bogus'),
                                         ('MXNET_CPU_WORKER_NTHREADS', '-1')])
def test_a_bad_mxnet_environment_is_one_line(tmp_path, name, value):
    proc = run_cli(SYNTHETIC + ['--out-dir', str(tmp_path / 'run')], env={name: value}, timeout=120)
    assert_one_line_error(proc, contains=f'{name}={value!r}')
    assert not (tmp_path / 'run').exists()


@pytest.mark.cli
@pytest.mark.parametrize('role, args', [
    ('server', SYNTHETIC),
    ('worker', SYNTHETIC),
    ('scheduler', ['generate', '--export', 'x', '--output', 'g.png', '--onnx']),
    ('server', SYNTHETIC + ['--kvstore', 'dist_sync']),
    ('worker', SYNTHETIC + ['--kvstore', 'dist_sync']),  # but no scheduler address
])
def test_stray_dmlc_role_is_refused_before_mxnet_loads(role, args, tmp_path):
    proc = run_cli(args + (['--out-dir', str(tmp_path / 'out')] if '--limit' in args else []),
                   env={'DMLC_ROLE': role}, timeout=60, cwd=str(tmp_path))
    assert_one_line_error(proc, contains='python run.py launch')
    assert not (tmp_path / 'out').exists()


@pytest.mark.cli
@pytest.mark.parametrize('args', [SYNTHETIC, SYNTHETIC[:-2] + ['--ctx', 'auto'],
                                  SYNTHETIC[:-2] + ['--ctx', 'gpu'],
                                  ['generate', '--export', 'x', '--output', 'g.png'],
                                  ['export', '--run', 'x'], ['evaluate', '--export', 'x'],
                                  ['ablate-activation'] + SYNTHETIC,
                                  ['analyze-categories', '--run', 'x']])
def test_gpu_build_without_driver_is_one_line(args, tmp_path):
    proc = run_cli(args + (['--out-dir', str(tmp_path / 'out')] if '--limit' in args else []),
                   env=fake_mxnet_without_driver(tmp_path), cwd=str(tmp_path))
    assert_one_line_error(proc, contains='NVIDIA driver (libcuda.so.1)')
    assert not (tmp_path / 'out').exists()
