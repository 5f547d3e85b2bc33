"""What a run attaches to the chapter's train() (loop.py): progress, epoch lines, signals.

A hook is any object with some of epoch_start(epoch, total, first_batch),
batch_end(epoch, batch, metric) and epoch_end(epoch, state); train() calls them in
list order. The chief's checkpoints, figures and metrics are the EpochEnd hook
(epoch_end.py).
"""
import time

from ..progress import progress_bar
from .loop import D_KEYS, Interrupted

# A bar of fixed width, so the whole line fits 80 columns (tqdm's own would squeeze
# the bar to one cell there): 'epoch 3/20  42%|#####       | 5/12, D 0.693 G 5.123 ...'
# (tqdm puts the comma before a postfix).
BAR_FORMAT = '{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt}{postfix}'


def _clock(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


class Progress:
    """One bar per epoch on a terminal, advanced when a batch has finished on the devices,
    with the losses so far, the speed, and the time left for the whole run."""

    def __init__(self, num_epochs, num_workers=1, enabled=True):
        self.num_epochs, self.num_workers, self.enabled = num_epochs, num_workers, enabled
        self.bar = None

    def epoch_start(self, epoch, total, first_batch):
        self.close()
        self.epoch, self.total, self.first = epoch, total, first_batch
        self.bar = progress_bar(total, f'epoch {epoch}/{self.num_epochs}', 'batch',
                                self.enabled, first_batch, BAR_FORMAT)
        self.started = time.time()

    def batch_end(self, epoch, batch, metric):
        if metric.done <= self.bar.n or not metric.examples:
            return
        self.bar.update(metric.done - self.bar.n)
        per_batch = (time.time() - self.started) / max(metric.done - self.first, 1)
        left = (self.total - metric.done) + self.total * (self.num_epochs - epoch)
        means = metric.means()
        self.bar.set_postfix_str(
            f"D {means['loss_D']:.3f} G {means['loss_G']:.3f} "
            f"{metric.examples * self.num_workers / metric.elapsed():.1f} ex/s "
            f"eta {_clock(per_batch * left)}")

    def epoch_end(self, epoch, state):
        self.close()

    def close(self):
        """Remove the bar (it leaves no line behind)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def epoch_line(row, num_epochs):
    """'epoch 3/20 loss_D 0.123 loss_G 5.123 D(x) 0.52 D(G) 0.31>0.28 123.4 ex/s' (<= 80).

    D(x) is D's mean output on the real images, D(G) on the fakes, before and after
    D's step."""
    D = ''
    if all(k in row for k in D_KEYS):
        D = f" D(x) {row['D_x']:.2f} D(G) {row['D_G_z']:.2f}>{row['D_G_z2']:.2f}"
    return (f"epoch {row['epoch']}/{num_epochs} loss_D {row['loss_D']:.3f} "
            f"loss_G {row['loss_G']:.3f}{D} {row['examples_per_sec']:.1f} ex/s")


class EpochLog:
    """The epoch's line on the run's log, after its bar is gone."""

    def __init__(self, num_epochs, log):
        self.num_epochs, self.log = num_epochs, log

    def epoch_end(self, epoch, state):
        self.log(epoch_line(state['history'][-1], self.num_epochs))


class StopOnSignal:
    """Stop after the batch during which SIGINT/SIGTERM arrived (StopFlag `stop`), or at
    the end of the epoch if that was its last batch: raise Interrupted. Put it last, so
    the other hooks have finished the epoch (its checkpoint) first."""

    def __init__(self, stop):
        self.stop = stop

    def epoch_start(self, epoch, total, first_batch):
        self.total = total

    def batch_end(self, epoch, batch, metric):
        if self.stop.signum and batch + 1 < self.total:
            metric.stop_clock()  # the sums so far, complete, for a mid-epoch checkpoint
            raise Interrupted(self.stop.signum, metric, batch + 1)

    def epoch_end(self, epoch, state):
        if self.stop.signum:
            raise Interrupted(self.stop.signum)
