"""share: the site it writes, run in a real browser against generate --onnx, and the inputs
it refuses in one line with nothing written.

The browser tests serve the site with the command share prints, on 127.0.0.1, and drive
headless Chromium over its DevTools pipe (tests/browser.py), reading the page's canvases
as a user sees them. They need Debian's chromium and the npm files (make web): without
them they skip, naming what is missing, except under CI (CI=true), which installs both
(.ci/run), where they fail. The refusals run cli.main in this process, on the session's
one-epoch run (conftest.one_epoch_run), with a stand-in for onnxruntime-web.
"""
import base64
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as onp
import pytest
from PIL import Image

from browser import Browser, chromium
from conftest import ROOT, assert_one_line_error, run_cli, snapshot
from gluon_dcgan.export.load import load_onnx_generator
from gluon_dcgan.files import HOST
from gluon_dcgan.images import to_pixels
from gluon_dcgan.tools import latent, share

NUM, SEEDS, PAD = 16, 6, 2
# The page's status reaches 'ready' once every draw asked for is on its canvas. An action
# that asks for a draw sets 'busy' at once, so waiting for 'ready' after it is no race.
READY = """new Promise((resolve, reject) => {
  const status = document.getElementById('status');
  const check = () => {
    if (status.dataset.state === 'ready') resolve(status.textContent);
    if (status.dataset.state === 'error') reject(new Error(status.textContent));
  };
  new MutationObserver(check).observe(status, {attributes: true, childList: true});
  check();
})"""
PIXELS = """(() => {
  const canvas = document.getElementById('%s');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let text = '';
  for (let i = 0; i < data.length; i += 8192) {
    text += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
  }
  return [canvas.width, canvas.height, btoa(text)];
})()"""


def _needed():
    """Skip (fail under CI) unless Chromium and the npm files are here."""
    missing = [what for what, here in [
        ("Debian's chromium (apt-get install chromium)", chromium()),
        ('the npm files of web/ (make web)', all(os.path.isfile(os.path.join(
            share.DEFAULT_RUNTIME, 'dist', name)) for name in share.ORT_FILES)),
    ] if not here]
    if missing:
        message = f'the browser test needs {" and ".join(missing)}'
        if os.environ.get('CI'):
            pytest.fail(f'{message}: .ci/run installs both', pytrace=False)
        pytest.skip(message)


def _redraw_weights(export):
    """Give the export's ONNX graph random weights (He scaled, BatchNorm the identity), and
    re-hash it in the manifest: a one-epoch generator draws nearly one grey image whatever
    the latent, on which neither a wrong latent nor a dead slider would show."""
    import onnx
    from onnx import numpy_helper
    model, rng = onnx.load(str(export / 'generator.onnx')), onp.random.default_rng(0)
    norm = {name: role for node in model.graph.node if node.op_type == 'BatchNormalization'
            for role, name in zip(('scale', 'B', 'mean', 'var'), node.input[1:])}
    first = next(node.input[1] for node in model.graph.node
                 if node.input[0] == model.graph.input[0].name)
    for weights in model.graph.initializer:
        old = numpy_helper.to_array(weights)
        if old.ndim == 4:  # ConvTranspose (in, out, 4, 4): on the 1x1 latent one tap of the
            # kernel reaches each output, at stride 2 four do
            fan_in = old.shape[0] * (1 if weights.name == first else 4)
            new = rng.standard_normal(old.shape) * onp.sqrt(2 / fan_in)
        else:
            new = onp.full(old.shape, float(norm.get(weights.name) in ('scale', 'var')))
        weights.CopyFrom(numpy_helper.from_array(new.astype(onp.float32), weights.name))
    onnx.save(model, str(export / 'generator.onnx'))
    _rehash(export)


def _rehash(export):
    """generator.onnx's new SHA-256 in the manifest, so that its check passes."""
    manifest = json.loads((export / 'manifest.json').read_text())
    manifest['files']['generator.onnx'] = hashlib.sha256(
        (export / 'generator.onnx').read_bytes()).hexdigest()
    (export / 'manifest.json').write_text(json.dumps(manifest))


@pytest.fixture(scope='module')
def site(one_epoch_run, tmp_path_factory):
    """(the site, its export, share's output) of the session's one-epoch run, whose ONNX
    weights are redrawn (_redraw_weights): its images change with the latent."""
    _needed()
    out, export = tmp_path_factory.mktemp('share') / 'site', tmp_path_factory.mktemp('e') / 'x'
    shutil.copytree(one_epoch_run / 'export', export)
    _redraw_weights(export)
    proc = run_cli(['share', '--export', str(export), '--out', str(out), '--num', str(NUM),
                    '--seeds', str(SEEDS)])
    assert proc.returncode == 0, proc.stderr
    return out, export, proc.stdout


@pytest.fixture(scope='module')
def page(site, tmp_path_factory):
    """Headless Chromium on the site, served by the command share printed (port 0: any free
    one, which the server's first line names), once the page has drawn everything."""
    serve = site[2].split('serve it with: ')[1].split(', then open')[0]
    argv = [a if a != '8000' else '0' for a in shlex.split(serve)]
    assert argv[:3] == ['python', '-m', 'http.server'] and '127.0.0.1' in argv, argv
    server = subprocess.Popen([sys.executable, '-u'] + argv[1:], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    browser = None
    try:
        line = server.stdout.readline()  # 'Serving HTTP on 127.0.0.1 port N (...) ...'
        assert ' port ' in line, f'the server printed {line!r}'
        port = int(line.split(' port ')[1].split()[0])
        browser = Browser(str(tmp_path_factory.mktemp('chromium')))
        browser.open(f'http://127.0.0.1:{port}/')
        browser.js(READY)
        yield browser
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        server.wait()


def _act(page, action):
    """Run a JavaScript `action` in the page, then wait until what it asked is drawn."""
    page.js(f'(() => {{ {action}; }})()')
    page.js(READY)


def _set(page, element, value, event='input'):
    _act(page, f"const e = document.getElementById('{element}'); e.value = '{value}'; "
               f"e.dispatchEvent(new Event('{event}', {{bubbles: true}}))")


def _canvas(page, name):
    """(H, W, 3) uint8 pixels of a canvas; its alpha is checked opaque."""
    width, height, data = page.js(PIXELS % name)
    rgba = onp.frombuffer(base64.b64decode(data), onp.uint8).reshape(height, width, 4)
    assert (rgba[..., 3] == 255).all()
    return rgba[..., :3]


def _png(path):
    return onp.asarray(Image.open(path).convert('RGB'))


def _assert_within_one_grey_level(got, expected):
    assert got.shape == expected.shape
    assert onp.abs(got.astype(int) - expected.astype(int)).max() <= 1


def _latents(site):
    """latents.bin as written: (SEEDS, NUM, D) grid latents and the (K, D) directions."""
    meta = json.loads((site / 'site.json').read_text())
    values = onp.fromfile(site / 'latents.bin', '<f4')
    dim, count = meta['latent_dim'], SEEDS * NUM * meta['latent_dim']
    return values[:count].reshape(SEEDS, NUM, dim), values[count:].reshape(-1, dim)


def _onnx_pixels(export, Z):
    run, _ = load_onnx_generator(str(export))
    return to_pixels(run(onp.asarray(Z, onp.float32).reshape(len(Z), -1, 1, 1)))


@pytest.mark.cli
def test_the_site_holds_generates_latents_and_the_exports_model(site):
    out, export, stdout = site
    assert sorted(os.listdir(out)) == sorted(share.PAGE_FILES + share.ORT_FILES + (
        'generator.onnx', 'site.json', 'latents.bin', share.RECORD))
    assert (out / 'generator.onnx').read_bytes() == (export / 'generator.onnx').read_bytes()
    grids, directions = _latents(out)
    for seed in range(SEEDS):
        assert onp.array_equal(grids[seed], latent.latent_noise(NUM, grids.shape[2], seed)[
            :, :, 0, 0])
    assert onp.allclose(directions @ directions.T, onp.eye(len(directions)), atol=1e-6)
    assert stdout.startswith(f'wrote {out}: ')


@pytest.mark.cli
def test_the_grid_of_a_seed_is_generate_onnxs(page, site, tmp_path):
    _, export, _ = site
    for seed in (0, 5):
        if seed:
            _set(page, 'seed', seed, event='change')
        proc = run_cli(['generate', '--onnx', '--export', str(export), '--seed', str(seed),
                        '--num', str(NUM), '--output', str(tmp_path / f'{seed}.png')])
        assert proc.returncode == 0, proc.stderr
        _assert_within_one_grey_level(_canvas(page, 'grid'), _png(tmp_path / f'{seed}.png'))


@pytest.mark.cli
def test_a_slider_moves_the_sample_along_its_direction(page, site):
    out, export, _ = site
    grids, directions = _latents(out)
    seed = int(page.js("document.getElementById('seed').value"))
    _set(page, 'tile', 3)
    before = _canvas(page, 'sample')
    _assert_within_one_grey_level(before, _onnx_pixels(export, grids[seed, 3:4])[0])
    _act(page, "const s = document.querySelectorAll('#sliders input')[1]; s.value = '2.5'; "
               "s.dispatchEvent(new Event('input', {bubbles: true}))")
    moved = _canvas(page, 'sample')
    z = grids[seed, 3] + onp.float32(2.5) * directions[1]
    _assert_within_one_grey_level(moved, _onnx_pixels(export, z[None])[0])
    assert onp.abs(moved.astype(int) - before.astype(int)).mean() > 1
    _act(page, "document.getElementById('reset').click()")
    _assert_within_one_grey_level(_canvas(page, 'sample'), before)


@pytest.mark.cli
def test_the_walk_is_generate_interpolates_and_plays(page, site, tmp_path):
    out, export, _ = site
    steps = json.loads((out / 'site.json').read_text())['walk_steps']
    seed = int(page.js("document.getElementById('seed').value"))
    proc = run_cli(['generate', '--onnx', '--export', str(export), '--interpolate', '1',
                    '--steps', str(steps), '--seed', str(seed), '--output',
                    str(tmp_path / 'walk.png')])
    assert proc.returncode == 0, proc.stderr
    walk = _png(tmp_path / 'walk.png')
    size = (walk.shape[1] - PAD) // steps - PAD
    for frame in (4, steps - 1):  # on the way, and at the second tile
        _set(page, 'walk-frame', frame)
        left = PAD + frame * (size + PAD)
        _assert_within_one_grey_level(_canvas(page, 'walk'),
                                      walk[PAD:PAD + size, left:left + size])
    still = _canvas(page, 'walk')
    # Play, and pause once three frames were drawn (the label changes with each): the
    # canvas then holds the third.
    frame = page.js("""new Promise((resolve) => {
      const play = document.getElementById('play');
      let seen = 0;
      new MutationObserver(() => {
        if (++seen === 3) {
          play.click();
          resolve(Number(document.getElementById('walk-frame').value));
        }
      }).observe(document.getElementById('walk-label'), {childList: true});
      play.click();
    })""")
    assert frame == steps - 1 + 3
    played = _canvas(page, 'walk')
    grids, _ = _latents(out)
    leg, j = divmod(frame, steps - 1)
    z = latent.slerp(grids[seed, leg], grids[seed, leg + 1], [j / (steps - 1)])
    _assert_within_one_grey_level(played, _onnx_pixels(export, z)[0])
    assert onp.abs(played.astype(int) - still.astype(int)).mean() > 1


@pytest.mark.cli
def test_opened_as_a_file_the_page_says_how_to_serve_it(page, site):
    # The last test of the page: it leaves the served site.
    page.open((site[0] / 'index.html').as_uri())
    text = page.js("document.getElementById('status').textContent")
    assert 'python -m http.server --bind 127.0.0.1' in text, text


def _stand_in_runtime(folder, version=share.ORT_WEB_VERSION):
    """A folder shaped like onnxruntime-web's package, for the refusals (no browser runs it)."""
    (folder / 'dist').mkdir(parents=True)
    (folder / 'package.json').write_text(json.dumps({'version': version}))
    for name in share.ORT_FILES:
        (folder / 'dist' / name).write_text(f'// {name}\n')
    return folder


def _share(main, export, out, runtime, *extra):
    return main(['share', '--export', str(export), '--out', str(out),
                 '--onnxruntime-web', str(runtime), *extra])


@pytest.fixture
def export(one_epoch_run, tmp_path):
    shutil.copytree(one_epoch_run / 'export', tmp_path / 'export')
    return tmp_path / 'export'


@pytest.mark.cli
def test_share_replaces_its_own_site_and_refuses_anything_else(export, tmp_path,
                                                               main_in_process):
    runtime, out = _stand_in_runtime(tmp_path / 'ort'), tmp_path / 'site'
    assert _share(main_in_process, export, out, runtime).returncode == 0
    gone = subprocess.Popen(['true'])  # a killed share's half-written site, beside it
    gone.wait()
    killed = tmp_path / f'.site{share.SITE.new_mark}{HOST}-{gone.pid}-0123abcd'
    killed.mkdir()
    (killed / 'index.html').write_text('half')
    assert _share(main_in_process, export, out, runtime, '--seeds', '2').returncode == 0
    assert json.loads((out / 'site.json').read_text())['seeds'] == 2
    assert not killed.exists()
    for name, text in [('notes.txt', 'mine'), ('index.html', 'edited')]:
        (out / name).write_text(text)  # a file of the user's, then one of share's edited
        before = snapshot(out)
        assert_one_line_error(_share(main_in_process, export, out, runtime),
                              contains=f'holds {name}, which share did not write')
        assert snapshot(out) == before
        if name == 'notes.txt':
            (out / name).unlink()
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'a.png').write_bytes(b'x')
    assert_one_line_error(_share(main_in_process, export, mine, runtime), contains='a.png')
    assert os.listdir(mine) == ['a.png']
    assert_one_line_error(_share(main_in_process, export, export / 'site', runtime),
                          contains='inside the --export folder')


@pytest.mark.cli
@pytest.mark.parametrize('runtime', ['missing', 'empty', 'other version'])
def test_share_without_the_npm_files_says_make_web(runtime, export, tmp_path,
                                                   main_in_process):
    folder = {'missing': lambda: tmp_path / 'none', 'empty': lambda: tmp_path,
              'other version': lambda: _stand_in_runtime(tmp_path / 'ort', '1.0.0')}[runtime]()
    line = assert_one_line_error(_share(main_in_process, export, tmp_path / 'site', folder),
                                 contains='make web')
    assert 'onnxruntime-web' in line and not (tmp_path / 'site').exists()


@pytest.mark.cli
def test_share_refuses_more_latents_than_a_page_should_download(export, tmp_path,
                                                                main_in_process):
    proc = _share(main_in_process, export, tmp_path / 'site', _stand_in_runtime(
        tmp_path / 'ort'), '--seeds', '1000', '--num', '64')
    assert_one_line_error(proc, contains='lower --seeds or --num')
    assert not (tmp_path / 'site').exists()


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.cli
@pytest.mark.parametrize('damage, says', [
    (lambda e: shutil.rmtree(e), 'does not exist'),
    (lambda e: (e / 'generator.onnx').unlink(), 'lacks generator.onnx'),
    (lambda e: _flip_a_byte(e / 'generator.onnx'), 'does not match the SHA-256'),
    (lambda e: ((e / 'generator.onnx').write_bytes(b'not onnx'), _rehash(e)), 'cannot load'),
    (lambda e: (e / 'manifest.json').write_text('{'), 'is damaged'),
], ids=['missing', 'no onnx', 'changed onnx', 'not onnx, rehashed', 'damaged manifest'])
def test_share_refuses_a_bad_export_in_one_line(damage, says, export, tmp_path,
                                                main_in_process):
    damage(export)
    proc = _share(main_in_process, export, tmp_path / 'site', _stand_in_runtime(tmp_path / 'o'))
    assert_one_line_error(proc, contains=says)
    assert not (tmp_path / 'site').exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.site')]


@pytest.mark.unit
def test_the_pinned_onnxruntime_web_is_the_locked_one():
    web = os.path.join(ROOT, 'web')
    with open(os.path.join(web, 'package.json')) as f:
        assert json.load(f)['dependencies'] == {'onnxruntime-web': share.ORT_WEB_VERSION}
    with open(os.path.join(web, 'package-lock.json')) as f:
        packages = json.load(f)['packages']
    assert packages['node_modules/onnxruntime-web']['version'] == share.ORT_WEB_VERSION
    assert all(p['integrity'].startswith('sha512-') for name, p in packages.items() if name)


@pytest.mark.unit
def test_the_slider_directions_are_fixed_and_orthonormal():
    d = share.directions(100)
    assert d.shape == (share.DIRECTIONS, 100) and d.dtype == onp.float32
    assert onp.allclose(d @ d.T, onp.eye(share.DIRECTIONS), atol=1e-6)
    assert onp.array_equal(d, share.directions(100))
    assert share.directions(2).shape == (2, 2)
