"""Unit: the chapter's train() loop and the hooks a run attaches to it."""
import mxnet as mx
import pytest

from gluon_dcgan.config import Config
from gluon_dcgan.data.synthetic import make_sprites
from gluon_dcgan.train import hooks
from gluon_dcgan.train.loop import GAN, Interrupted, new_state, train


class Recorder:
    """A hook that records what train() tells it."""

    def __init__(self):
        self.events = []

    def epoch_start(self, epoch, total, first_batch):
        self.events.append(('start', epoch, total, first_batch))

    def batch_end(self, epoch, batch, metric):
        self.events.append(('batch', epoch, batch, metric.done))

    def epoch_end(self, epoch, state):
        self.events.append(('end', epoch, state['epoch'], len(state['history'])))


def _gan():
    cfg = Config(data='synthetic', batch_size=8, n_G=8, n_D=8, progress=False, epochs=2)
    return GAN(cfg, [mx.cpu()])


def test_train_calls_the_hooks_and_counts_only_finished_batches():
    gan, recorder = _gan(), Recorder()
    state = train(gan, make_sprites(24), 2, new_state(), [recorder])
    # Each batch is counted done once the next one is queued: the devices stay busy.
    assert recorder.events == [
        ('start', 1, 3, 0), ('batch', 1, 0, 0), ('batch', 1, 1, 1), ('batch', 1, 2, 2),
        ('end', 1, 1, 1),
        ('start', 2, 3, 0), ('batch', 2, 0, 0), ('batch', 2, 1, 1), ('batch', 2, 2, 2),
        ('end', 2, 2, 2)]
    assert [row['epoch'] for row in state['history']] == [1, 2]
    assert all(row['loss_D'] > 0 and row['loss_G'] > 0 for row in state['history'])


def test_a_signal_stops_after_the_batch_with_complete_sums():
    gan = _gan()
    stop = type('Stop', (), {'signum': None})()

    class SignalAtBatch1:
        def batch_end(self, epoch, batch, metric):
            if batch == 1:
                stop.signum = 15

    with pytest.raises(Interrupted) as caught:
        train(gan, make_sprites(24), 2, new_state(), [SignalAtBatch1(), hooks.StopOnSignal(stop)])
    exc = caught.value
    assert exc.exit_code == 143 and exc.next_batch == 2
    assert exc.sums.done == 2 and exc.sums.examples == 16 and not exc.sums.pending
    assert exc.sums.seconds > 0


def test_epoch_lines_fit_80_columns():
    # 100 epochs, a large loss_G and the H200's 62,721 examples/sec (REFERENCE.md)
    row = {'epoch': 100, 'loss_D': 1.234, 'loss_G': 12.345, 'D_x': 0.5, 'D_G_z': 0.25,
           'D_G_z2': 0.125, 'examples_per_sec': 62721.0}
    line = hooks.epoch_line(row, 100)
    assert line == ('epoch 100/100 loss_D 1.234 loss_G 12.345 D(x) 0.50 D(G) 0.25>0.12 '
                    '62721.0 ex/s')
    assert len(line) <= 80
