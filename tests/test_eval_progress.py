"""Progress bars of the long evaluation jobs: FID features and the judging classifier.

A bar is drawn on stderr only when it is a terminal and progress is asked for.
"""
import io

import numpy as onp
import pytest

from conftest import Terminal
from gluon_dcgan.quality import fid
from gluon_dcgan.tools import classifier


class Pipe(io.StringIO):
    def isatty(self):
        return False


class FakeInception:
    """net.features of the model zoo's Inception, reduced to a fixed projection."""

    def features(self, x):
        import mxnet as mx
        return mx.nd.ones((x.shape[0], 2048, 1, 1)) * x.mean()


def images(n):
    return onp.random.default_rng(0).integers(0, 256, size=(n, 8, 8, 3), dtype=onp.uint8)


@pytest.mark.unit
@pytest.mark.parametrize('stderr, progress, drawn', [(Terminal, True, True),
                                                     (Terminal, False, False),
                                                     (Pipe, True, False)])
def test_feature_extraction_bar(monkeypatch, stderr, progress, drawn):
    err = stderr()
    monkeypatch.setattr('sys.stderr', err)
    feats = fid.inception_features(FakeInception(), images(5), batch_size=2,
                                   progress=progress, desc='real images')
    assert feats.shape == (5, 2048) and feats.dtype == onp.float32
    assert ('real images' in err.getvalue() and '/5 [' in err.getvalue()) == drawn, \
        err.getvalue()
    assert drawn or err.getvalue() == ''


@pytest.mark.unit
@pytest.mark.parametrize('stderr, progress, drawn', [(Terminal, True, True),
                                                     (Terminal, False, False),
                                                     (Pipe, True, False)])
def test_classifier_training_bar(monkeypatch, stderr, progress, drawn):
    err = stderr()
    monkeypatch.setattr('sys.stderr', err)
    x = onp.random.default_rng(1).integers(0, 256, size=(12, 64, 64, 1), dtype=onp.uint8)
    y = onp.arange(12) % 10
    logged = []
    classifier.train_classifier(x, y, epochs=2, log=logged.append, batch_size=4,
                                progress=progress)
    assert len(logged) == 2
    shown = err.getvalue()
    assert ('classifier epoch 2/2' in shown and '/3 [' in shown) == drawn, shown
    assert drawn or shown == ''


@pytest.mark.unit
@pytest.mark.parametrize('command', ['evaluate', 'analyze-categories'])
def test_no_progress_is_a_flag(command, main_in_process):
    proc = main_in_process([command, '--help'])
    assert proc.returncode == 0 and '--no-progress' in proc.stdout
