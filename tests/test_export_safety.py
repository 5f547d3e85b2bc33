"""Exports that survive kills, odd paths, a second writer and hostile files (issue #20).

The swap (export/swap.py) is killed at each of its steps by a child process that
SIGKILLs itself on its k-th file operation; then a real command (generate on the
export or on export/best, export --run, training --resume) must find the old or the
new export whole, and export/best/ and the user's kept exports byte for byte.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, TINY, assert_one_line_error, run_cli
from live import wait_until

# A child that exports a fresh 16-wide generator to argv[2], and SIGKILLs itself on its
# k-th (argv[1]) rename, replace, remove, rmdir or mkdir: every step of the swap in turn.
KILLED_EXPORT = '''
import os, signal, sys
k, target = int(sys.argv[1]), sys.argv[2]
from gluon_dcgan.runtime import configure_process, use_np
configure_process()
use_np()
import mxnet as mx
from gluon_dcgan.export.mxnet_export import export_generator
from gluon_dcgan.model import net_G
net = net_G(16)
net.initialize(mx.init.Normal(0.02))
calls = [0]
def killing(real):
    def op(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return op
for name in ('rename', 'replace', 'remove', 'rmdir', 'mkdir'):
    setattr(os, name, killing(getattr(os, name)))
export_generator(net, target, 100, 3)
print('finished after', calls[0], 'file operations')
'''


def _snapshot(folder):
    """{relative path: SHA-256} of every file under `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(
                open(path, 'rb').read()).hexdigest()
    return out


def _own_files(folder):
    """{name: SHA-256} of the export's own files in `folder` (its sub-folders aside)."""
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest()
            for n in os.listdir(folder) if (folder / n).is_file()}


def _is_whole(folder):
    manifest = json.loads((folder / 'manifest.json').read_text())
    files = _own_files(folder)
    return all(files.get(n) == digest for n, digest in manifest['files'].items())


@pytest.fixture
def kept_run(tiny_run, tmp_path):
    """A run whose export/ holds best/ (with a kept export of the user's inside) and keep/."""
    run = tmp_path / 'pristine'
    shutil.copytree(tiny_run[0], run)
    export = run / 'export'
    shutil.copytree(export, tmp_path / 'copy')
    shutil.copytree(tmp_path / 'copy', export / 'best')
    shutil.copytree(tmp_path / 'copy', export / 'best' / 'mine')
    shutil.copytree(tmp_path / 'copy', export / 'keep')
    shutil.rmtree(tmp_path / 'copy')
    return run


def _after_a_kill(state, command, tmp_path, main_in_process):
    """Run one command on a copy of a killed state; return the copy and the result."""
    run = tmp_path / f'after-{command}'
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(state, run, symlinks=True)
    if command == 'generate export':
        args = ['generate', '--export', run / 'export', '--num', '1', '--output',
                tmp_path / 'g.png']
    elif command == 'generate best':
        args = ['generate', '--export', run / 'export' / 'best', '--num', '1', '--output',
                tmp_path / 'g.png']
    elif command == 'export':
        args = ['export', '--run', run]
    else:
        args = TINY + ['--epochs', '3', '--out-dir', run, '--resume']
    return run, main_in_process(args)


COMMANDS = ['generate export', 'generate best', 'export', 'train --resume']


@pytest.mark.slow
@pytest.mark.parametrize('target', ['export', 'export/best'])
def test_a_kill_at_each_step_of_the_swap_then_any_command_loses_no_export(
        kept_run, tmp_path, main_in_process, target):
    subs = {'export': ['best', 'keep'], 'export/best': ['mine']}[target]
    folder = kept_run / target
    before = {name: _snapshot(folder / name) for name in subs}
    child = tmp_path / 'child.py'
    child.write_text(KILLED_EXPORT)
    state = tmp_path / 'state'
    for k in range(1, 100):
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(kept_run, state)
        proc = subprocess.run([sys.executable, child, str(k), state / target],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            assert 'finished after' in proc.stdout and k > 8, (k, proc.stdout)  # all steps
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        for command in COMMANDS:
            run, result = _after_a_kill(state, command, tmp_path, main_in_process)
            where = f'killed at file operation {k}, then {command}'
            assert result.returncode == 0 and 'Traceback' not in result.stderr, \
                (where, result.stderr)
            done = run / target
            for name in subs:
                assert _snapshot(done / name) == before[name], where
            assert _is_whole(done), where  # the old export, or the child's or command's new one
            leftovers = [p.name for p in done.parent.iterdir() if '.partial-' in p.name or
                         '.old-' in p.name]
            assert not leftovers, (where, leftovers)
    else:
        pytest.fail('the export never finished')


@pytest.mark.cli
@pytest.mark.parametrize('how', ['cd export; --out .', '--out RUN/export/.',
                                 '--out RUN/export/best/..'])
def test_out_given_with_dots_keeps_the_export_and_its_sub_exports(kept_run, how,
                                                                  main_in_process,
                                                                  monkeypatch):
    export = kept_run / 'export'
    before = {name: _snapshot(export / name) for name in ('best', 'keep')}
    if how.startswith('cd'):
        monkeypatch.chdir(export)
        line = assert_one_line_error(main_in_process(['export', '--run', '..', '--out', '.']))
        assert 'is the current folder' in line and '--out export' in line, line
        assert _own_files(export) and _is_whole(export)
    else:
        out = str(export) + how[len('--out RUN/export'):]
        proc = main_in_process(['export', '--run', kept_run, '--out', out])
        assert proc.returncode == 0, proc.stderr
        assert 'generator.onnx' in _own_files(export) and _is_whole(export)
    assert {name: _snapshot(export / name) for name in before} == before
    assert sorted(p.name for p in kept_run.iterdir() if p.name.startswith('.export')) == []


def _waiters(lock_path):
    """How many processes wait for the flock on `lock_path` (/proc/locks' '->' lines)."""
    inode = os.stat(lock_path).st_ino
    with open('/proc/locks') as f:
        return sum(1 for line in f if '->' in line and f':{inode} ' in line)


@pytest.mark.cli
def test_two_exporters_into_one_folder_take_turns(kept_run, tiny_run, tmp_path):
    # They deleted each other's temporary folders: exit 1, or an MXNetError traceback.
    from gluon_dcgan import files
    from gluon_dcgan.export import swap
    other = tmp_path / 'other-run'
    shutil.copytree(tiny_run[0], other)
    target = tmp_path / 'shared'
    shutil.copytree(kept_run / 'export', target)
    before = {name: _snapshot(target / name) for name in ('best', 'keep')}
    exporters = []
    with swap.lock(str(target)):  # both must wait for it, then for each other
        for run in (kept_run, other):
            exporters.append(subprocess.Popen(
                [sys.executable, os.path.join(ROOT, 'run.py'), 'export', '--run', str(run),
                 '--out', str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        wait_until(lambda: _waiters(files.stem(str(target)) + files.LOCK) == 2,
                   'both exporters to wait for the lock', timeout=300)
    for proc in exporters:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and 'Traceback' not in err, err
    assert _is_whole(target) and 'generator.onnx' in _own_files(target)
    assert {name: _snapshot(target / name) for name in before} == before
    assert sorted(os.listdir(tmp_path)) == ['other-run', 'pristine', 'shared']


def _rehash(export):
    path = export / 'manifest.json'
    manifest = json.loads(path.read_text())
    manifest['files'] = {n: hashlib.sha256((export / n).read_bytes()).hexdigest()
                         for n in manifest['files']}
    path.write_text(json.dumps(manifest))


def _nested_subgraphs(depth):
    graph = {'nodes': [{'op': 'null', 'name': 'data', 'inputs': []}], 'arg_nodes': [0],
             'heads': [[0, 0, 0]]}
    text = json.dumps(graph)
    for _ in range(depth):  # each level: a node whose subgraph is the level below
        text = ('{"nodes": [{"op": "_foreach", "name": "f", "inputs": [], "subgraphs": [' +
                text + ']}], "arg_nodes": [], "heads": [[0, 0, 0]]}')
    return text


@pytest.mark.cli
@pytest.mark.parametrize('depth', [5000, 1])
def test_a_graph_with_subgraphs_is_refused_before_mxnet_reads_it(export_copy, tmp_path,
                                                                  depth):
    # 5,000 levels (560 KB) made dmlc's JSON reader overflow its stack: SIGSEGV, rc 139.
    (export_copy / 'generator-symbol.json').write_text(_nested_subgraphs(depth))
    _rehash(export_copy)
    for command in ('generate', 'evaluate'):
        args = [command, '--export', str(export_copy)]
        args += ['--output', str(tmp_path / 'g.png')] if command == 'generate' else \
            ['--data', 'synthetic', '--num', '2']
        line = assert_one_line_error(run_cli(args), contains='re-export')
        assert 'generator-symbol.json' in line and 'damaged' in line, line
    assert not (tmp_path / 'g.png').exists()


@pytest.mark.cli
@pytest.mark.parametrize('kind', ['fifo', 'huge'])
def test_an_onnx_file_that_is_a_fifo_or_too_large_is_one_line(export_copy, tmp_path, kind):
    onnx = export_copy / 'generator.onnx'
    onnx.unlink()
    if kind == 'fifo':
        os.mkfifo(onnx)  # no writer: a plain read waits forever
    else:
        with open(onnx, 'wb') as f:
            f.truncate((2 << 30) + 1)  # sparse: past the 2 GiB ONNX can hold
    proc = run_cli(['generate', '--onnx', '--export', str(export_copy), '--output',
                    str(tmp_path / 'g.png')], timeout=120)
    line = assert_one_line_error(proc, contains='re-export')
    assert 'not a regular file' in line or 'larger than' in line, line


def _onnx_of_side(folder, side):
    """A consistent export of square `side`-pixel images: onnx, manifest, nothing else."""
    import numpy as onp
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    folder.mkdir()
    spread = numpy_helper.from_array(onp.array([1, 3, side, side], onp.int64), 'spread')
    graph = helper.make_graph(
        [helper.make_node('ReduceMean', ['data'], ['mean'], axes=[1], keepdims=1),
         helper.make_node('Tanh', ['mean'], ['tanh']),
         helper.make_node('Expand', ['tanh', 'spread'], ['out'])], 'wide',
        [helper.make_tensor_value_info('data', TensorProto.FLOAT, ['N', 100, 1, 1])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, ['N', 3, side, side])],
        [spread])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    onnx.save(model, str(folder / 'generator.onnx'))
    (folder / 'manifest.json').write_text(json.dumps({
        'latent_dim': 100, 'output_shape': ['N', 3, side, side],
        'files': {'generator.onnx': hashlib.sha256(
            (folder / 'generator.onnx').read_bytes()).hexdigest()}}))


@pytest.mark.unit
def test_an_export_of_huge_images_is_refused_before_it_runs(tmp_path, main_in_process):
    # 4096x4096 passed the 1- and 2-latent checks; --num 256 then wanted 51 GB at once.
    _onnx_of_side(tmp_path / 'huge', 4096)
    line = assert_one_line_error(main_in_process(
        ['generate', '--onnx', '--export', tmp_path / 'huge', '--num', '256', '--output',
         tmp_path / 'g.png']), contains='re-export')
    assert '4096x4096 images, larger than the 1024x1024' in line, line
    assert not (tmp_path / 'g.png').exists()


@pytest.mark.unit
def test_generate_bounds_the_memory_of_large_images(tmp_path, main_in_process):
    from PIL import Image
    _onnx_of_side(tmp_path / 'wide', 512)
    args = ['generate', '--onnx', '--export', tmp_path / 'wide', '--output', tmp_path / 'g.png']
    line = assert_one_line_error(main_in_process(args + ['--num', '10000']))
    assert 'lower --num (at most 161 images)' in line, line
    assert not (tmp_path / 'g.png').exists()
    proc = main_in_process(args + ['--num', '5'])  # in passes of 4: 12.6 MB of output each
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / 'g.png').size == (3 * 514 + 2, 2 * 514 + 2)


@pytest.mark.unit
def test_each_pass_is_checked_against_the_manifest():
    import numpy as onp

    from gluon_dcgan.errors import UserError
    from gluon_dcgan.export.load import pixels_of
    manifest = {'latent_dim': 4, 'output_shape': ['N', 3, 8, 8]}
    good = lambda Z: onp.zeros((len(Z), 3, 8, 8), onp.float32)
    assert pixels_of('e', good, manifest, onp.zeros((300, 4, 1, 1))).shape == (300, 8, 8, 3)
    fixed = lambda Z: onp.zeros((min(len(Z), 2), 3, 8, 8), onp.float32)  # fine for 1 and 2
    with pytest.raises(UserError, match=r'makes images of shape \(2, 3, 8, 8\) from 256'):
        pixels_of('e', fixed, manifest, onp.zeros((300, 4, 1, 1)))


@pytest.mark.cli
def test_deeply_nested_manifests_are_one_line(export_copy, tmp_path, tiny_run,
                                              main_in_process):
    # 200,000 levels ended in a RecursionError traceback.
    (export_copy / 'manifest.json').write_text('[' * 200_000 + ']' * 200_000)
    for args in (['generate', '--export', export_copy, '--output', tmp_path / 'g.png'],
                 ['export', '--run', tiny_run[0], '--out', export_copy]):
        line = assert_one_line_error(main_in_process(args))
        assert 're-export' in line or 'not part of an export (generator' in line, line
    assert (export_copy / 'manifest.json').read_text().startswith('[[[')


# ---- the swap's recovery, on folders made by hand (no MXNet: any bytes make an export) ----

DEAD = 'deadbeef'  # not this host's hash: the suffix below is made with files.HOST


def _dead_suffix():
    from gluon_dcgan import files
    pid_max = int(open('/proc/sys/kernel/pid_max').read())
    return f'{files.HOST}-{pid_max + 1}-{DEAD}'  # a PID no process can have


def _fake_export(folder, tag):
    folder.mkdir()
    (folder / 'generator.onnx').write_text(tag)
    (folder / 'manifest.json').write_text(json.dumps(
        {'files': {'generator.onnx': hashlib.sha256(tag.encode()).hexdigest()}}))


@pytest.mark.unit
def test_an_old_versions_partial_holding_best_is_put_back(tmp_path):
    # The old swap moved best/ into .export.partial-S first; the next run deleted it.
    from gluon_dcgan.export import swap
    partial = tmp_path / f'.export.partial-{_dead_suffix()}'
    _fake_export(tmp_path / 'export', 'old')
    _fake_export(partial, 'new')
    _fake_export(partial / 'best', 'best')
    before = _snapshot(partial / 'best')
    assert swap.recover(str(tmp_path / 'export'))
    assert _snapshot(tmp_path / 'export' / 'best') == before
    assert sorted(os.listdir(tmp_path)) == ['export']


@pytest.mark.unit
def test_recovery_keeps_a_whole_export_when_the_folder_is_not_one(tmp_path):
    from gluon_dcgan.export import swap
    suffix = _dead_suffix()
    (tmp_path / 'export').mkdir()  # made by hand while the swap was half done
    _fake_export(tmp_path / f'.export.old-{suffix}', 'old')
    _fake_export(tmp_path / f'.export.partial-{suffix}', 'new')
    _fake_export(tmp_path / f'.export.partial-{suffix}' / 'best', 'best')
    swap.recover(str(tmp_path / 'export'))
    assert (tmp_path / 'export' / 'best' / 'generator.onnx').read_text() == 'best'
    for name in (f'.export.old-{suffix}', f'.export.partial-{suffix}'):
        assert (tmp_path / name / 'generator.onnx').exists()  # never deleted


@pytest.mark.unit
def test_a_live_writers_swap_is_left_alone(tmp_path):
    from gluon_dcgan import files
    from gluon_dcgan.export import swap
    live = tmp_path / f'.export.partial-{files.owner_suffix()}'  # this process: alive
    _fake_export(live, 'live')
    assert not swap.recover(str(tmp_path / 'export'))
    assert (live / 'generator.onnx').read_text() == 'live'


@pytest.mark.unit
def test_a_removable_lock_never_has_two_holders(tmp_path):
    from gluon_dcgan.files import folder_lock
    path = str(tmp_path / '.x.lock')
    holders, overlaps, done, started = [], [], [], threading.Event()

    def hold(tag):
        with folder_lock(path, str(tmp_path), remove=True):
            if holders:
                overlaps.append(tag)
            holders.append(tag)
            started.set()
            wait_until(lambda: len(threads) == 3, 'the other threads to start')
            holders.remove(tag)
        done.append(tag)

    threads = []
    for tag in range(3):
        threads.append(threading.Thread(target=hold, args=(tag,)))
        threads[-1].start()
        started.wait(60)
    for t in threads:
        t.join(60)
    assert sorted(done) == [0, 1, 2] and not overlaps and not os.path.exists(path)


@pytest.mark.unit
def test_export_generator_leaves_nothing_when_interrupted(tmp_path):
    import mxnet as mx
    from gluon_dcgan.export.mxnet_export import export_generator
    from gluon_dcgan import model
    net_G = model.net_G(8)
    net_G.initialize(ctx=mx.cpu())

    def interrupted(folder):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_generator(net_G, str(tmp_path / 'export'), 100, 3, extra_writers=[interrupted])
    assert os.listdir(tmp_path) == []
