"""The chapter as a notebook (notebooks/dcgan.ipynb): committed without outputs, and it runs.

The slow test executes it headless with nbclient, on tiny settings given through the
GLUON_DCGAN_NB_* variables its first cell reads, in a kernel started from this Python.
Its Pokemon download goes to a closed port on 127.0.0.1, so it fails at once and the
notebook takes its fallback, the embedded sprites: no network is used.
"""
import json
import os
import re
import socket
import sys

import nbformat
import pytest

from conftest import FINAL_LINE, ROOT

NOTEBOOK = os.path.join(ROOT, 'notebooks', 'dcgan.ipynb')
# 64 images of 64x64 RGB (LIMIT), then the chapter's shape checks in its order: G_block
# 16 -> 32 and 1 -> 4, net_G, D_block 16 -> 8, net_D.
SHAPES = ['(64, 64, 64, 3)', '(2, 20, 32, 32)', '(2, 20, 4, 4)', '(1, 3, 64, 64)',
          '(2, 20, 8, 8)', '(1, 1, 1, 1)']
# One epoch of two steps on 8-wide nets, and a quality report on 24 images a side (its
# least is 12 real and 6 generated).
TINY = {'EPOCHS': '1', 'BATCH_SIZE': '32', 'LIMIT': '64', 'N_G': '8', 'N_D': '8',
        'EVAL_NUM': '24'}
KERNEL = 'gluon-dcgan-test'


@pytest.mark.unit
def test_the_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == 'code']
    assert len(code) > 20
    assert [c.source for c in code if c.outputs or c.execution_count is not None] == []


def _closed_port():
    """A port of 127.0.0.1 that nothing listens on: a connection is refused at once."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _kernel_manager(folder):
    """A kernel manager whose kernel is this Python (the venv's), whatever kernel specs
    the machine has: a spec in `folder` names sys.executable."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    spec = folder / 'kernels' / KERNEL
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'gluon_dcgan tests', 'language': 'python'}))
    specs = KernelSpecManager(kernel_dirs=[str(folder / 'kernels')])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _run(tmp_path, monkeypatch):
    """Execute the notebook in tmp_path; returns it with its outputs (a failing cell fails)."""
    from nbclient import NotebookClient
    for name, value in TINY.items():
        monkeypatch.setenv(f'GLUON_DCGAN_NB_{name}', value)
    monkeypatch.setenv('GLUON_DCGAN_NB_POKEMON_URL',
                       f'http://127.0.0.1:{_closed_port()}/pokemon.zip')
    monkeypatch.setenv('GLUON_DCGAN_NB_DATA_ROOT', str(tmp_path / 'data'))
    monkeypatch.setenv('GLUON_DCGAN_NB_OUT_DIR', str(tmp_path / 'out'))
    # The kernel's profile and connection files stay in the test's folder too.
    monkeypatch.setenv('IPYTHONDIR', str(tmp_path / 'ipython'))
    monkeypatch.setenv('JUPYTER_RUNTIME_DIR', str(tmp_path / 'runtime'))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = _kernel_manager(tmp_path)
    client = NotebookClient(nb, km=km, timeout=300, startup_timeout=120,
                            resources={'metadata': {'path': str(tmp_path)}})
    try:
        client.execute(cleanup_kc=True)  # the client's sockets: it does not own the kernel
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def _outputs(cell, kind):
    return [o for o in cell.outputs if o.output_type == kind]


def _cell(nb, text):
    """The one code cell whose source holds `text`."""
    found = [c for c in nb.cells if c.cell_type == 'code' and text in c.source]
    assert len(found) == 1, text
    return found[0]


def _has_image(cell):
    return any({'image/png', 'image/svg+xml'} & set(o.get('data', {}))
               for o in cell.outputs)


@pytest.mark.slow
def test_the_notebook_runs_the_chapter_offline_on_tiny_settings(tmp_path, monkeypatch):
    nb = _run(tmp_path, monkeypatch)
    code = [c for c in nb.cells if c.cell_type == 'code']
    results = [o.data['text/plain'] for c in code for o in _outputs(c, 'execute_result')]
    assert [r for r in results if re.fullmatch(r'\(\d+(, \d+)*\)', r)] == SHAPES
    stdout = ''.join(o.text for c in code for o in _outputs(c, 'stream') if o.name == 'stdout')
    # The download failed and the cell said so; the chapter's nets have its sizes.
    assert 'cannot download pokemon from http://127.0.0.1:' in stdout
    assert 'falling back to the embedded sprites' in stdout
    assert 'net_G: 3,576,704 trainable parameters, channels per layer (512, 256, 128, 64, 3)' \
        in stdout
    assert 'net_D: 2,765,696 trainable parameters, channels per layer (64, 128, 256, 512, 1)' \
        in stdout
    assert [line for line in stdout.splitlines() if FINAL_LINE.match(line)]
    assert 'largest pixel difference, ONNX against MXNet: 0' in stdout or \
        'largest pixel difference, ONNX against MXNet: 1' in stdout
    # The figures are drawn inline: the real images, the Animator, the grid and the walk.
    for text in ('d2l.show_images', 'api.train(', 'api.generate(', 'api.latent_walk(',
                 "'quality.png'"):
        assert _has_image(_cell(nb, text)), text
    animator = [o.data['image/svg+xml'] for o in _cell(nb, 'api.train(').outputs
                if 'image/svg+xml' in o.get('data', {})]
    assert len(animator) == 1 and '21 fresh samples after epoch 1' in animator[0]
    out = tmp_path / 'out'
    assert {'generator-symbol.json', 'generator-0000.params', 'generator.onnx',
            'manifest.json'} <= set(os.listdir(out / 'export'))
    manifest = json.loads((out / 'export' / 'manifest.json').read_text())
    assert manifest['epochs_trained'] == 1 and manifest['output_shape'] == ['N', 3, 64, 64]
    report = json.loads((out / 'quality.json').read_text())
    assert report['fake_vs_real']['rows'] == {'fake': 24, 'real': 24}
    assert (out / 'quality.md').read_text().startswith('# Sample quality')
