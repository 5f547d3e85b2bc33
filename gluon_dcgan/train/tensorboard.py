"""--tensorboard DIR: the run's metrics and samples as TensorBoard event files.

A hook after EpochEnd (fit.py attaches it on the chief, which writes all of a run's
outputs). At the end of each epoch it writes what EpochEnd has just produced: the epoch's
metrics.jsonl row as scalars (the scores of --eval-every / --fid-every included), the
fixed-noise grid it saved as samples/epoch_NNN.png, and after the last epoch the 21 fresh
samples of training.png. The step of every event is the epoch. tensorboardX builds the
events (pure Python, no TensorFlow), and its RecordWriter writes them at once, then
flushes and fsyncs the file at the end of each epoch. Its SummaryWriter is not used: it
hands the events to a thread, and its flush() does not wait for that thread, so an epoch
that is over could still be missing from the file.

Resuming. Each start writes a new event file. It begins with TensorBoard's restart marker
(SessionLog.START) at the first epoch this process trains, and TensorBoard's reader drops
the events of that epoch and later ones from the files before it. An epoch's events come
after its checkpoint (this hook runs after EpochEnd), and a resume starts after the last
checkpoint, so no epoch is written twice. The marker matters in two cases. A resume that
falls back past a damaged checkpoint trains again epochs that already have events, and
only the new ones are shown. A fresh start in a DIR used before (--overwrite) puts its
marker at epoch 1, which hides every older event. SIGINT and SIGTERM wait until the
epoch's hooks are done. Only a hard kill (SIGKILL, power loss) between the checkpoint and
the flush leaves an epoch out of TensorBoard, and metrics.jsonl still has it: a resume
rewrites that file from the checkpoint.
"""
import contextlib
import os
import socket
import time

from ..images import grid, to_pixels

# metrics.jsonl's fields -> their tag's group ('loss/loss_D'): TensorBoard puts the charts
# of a prefix together. A field not named here goes under 'metrics/'.
GROUPS = {'loss_D': 'loss', 'loss_G': 'loss', 'D_x': 'D', 'D_G_z': 'D', 'D_G_z2': 'D',
          'kid': 'quality', 'kid_std': 'quality', 'coverage': 'quality', 'fid': 'quality',
          'examples_per_sec': 'speed', 'seconds': 'speed'}
FIXED_TAG = 'samples/fixed_noise'  # samples/epoch_NNN.png, every epoch
FINAL_TAG = 'samples/final'        # training.png's 21 fresh samples, after the last epoch


def scalar_tag(field):
    """The tag of a metrics.jsonl field: 'loss/loss_D', 'quality/kid', ..."""
    return f"{GROUPS.get(field, 'metrics')}/{field}"


def scalars(row):
    """{tag: value} of a metrics row: each of its numbers but the epoch, which is the step."""
    return {scalar_tag(k): v for k, v in row.items()
            if k != 'epoch' and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoard:
    """The hook: writes into `folder` the epochs from `first_epoch` (where the run goes on)
    to `num_epochs`. `epoch_end` is the run's EpochEnd, and the images are its grids."""

    def __init__(self, folder, first_epoch, num_epochs, epoch_end):
        # The extra: config.check_tensorboard refused the flag before anything was written.
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.record_writer import RecordWriter
        self.Event, self.num_epochs, self.source = Event, num_epochs, epoch_end
        os.makedirs(folder, exist_ok=True)
        self.writer = RecordWriter(_new_file(folder))
        self._write(Event(file_version='brain.Event:2'))  # tells the reader what START means
        self._write(Event(step=first_epoch, session_log=SessionLog(status=SessionLog.START)))
        self.writer.flush()

    def _write(self, event):
        event.wall_time = time.time()
        self.writer.write(event.SerializeToString())

    def _summary(self, epoch, summary):
        self._write(self.Event(step=epoch, summary=summary))

    def epoch_end(self, epoch, state):
        from tensorboardX.summary import image, scalar
        for tag, value in scalars(state['history'][-1]).items():
            self._summary(epoch, scalar(tag, value))
        self._summary(epoch, image(FIXED_TAG, self.source.grid, dataformats='HWC'))
        if epoch == self.num_epochs:
            final = grid(to_pixels(self.source.fresh), cols=7)
            self._summary(epoch, image(FINAL_TAG, final, dataformats='HWC'))
        self.writer.flush()  # on disk before the next epoch starts

    def close(self):
        self.writer.close()


def _new_file(folder):
    """The path of this writer's event file: TensorBoard's events.out.tfevents.SECONDS.HOST,
    then the nanoseconds and the pid, so that the files of one host sort in the order they
    were started (the reader applies each START marker to the files before it) and two in
    the same second never share a name (tensorboardX opens it with 'wb')."""
    now = time.time_ns()
    name = (f'events.out.tfevents.{now // 10 ** 9}.{socket.gethostname()}.'
            f'{now % 10 ** 9:09d}.{os.getpid()}')
    # Absolute: tensorboardX sends a path that starts with 's3:' or 'gs:' to the cloud.
    return os.path.join(os.path.abspath(folder), name)


@contextlib.contextmanager
def hooks(cfg, state, epoch_end, chief):
    """The hooks --tensorboard adds to training: [TensorBoard] on the chief of a run with
    epochs left to train, else none. Its file is closed when training ends."""
    if not (cfg.tensorboard and chief and state['epoch'] < cfg.epochs):
        yield []
        return
    hook = TensorBoard(cfg.tensorboard, state['epoch'] + 1, cfg.epochs, epoch_end)
    try:
        yield [hook]
    finally:
        hook.close()
