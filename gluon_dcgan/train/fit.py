"""A whole training run: prepare the folder, resume, loop over epochs, export, report.

``fit(cfg)`` is what ``python run.py`` calls. It returns the process exit code.
"""
import os
import sys

from ..data import load_images
from ..errors import UserError
from ..runtime import bf16_problem, describe_contexts, resolve_contexts
from . import checkpoint, report, rundir
from .loop import FIXED, SAMPLES, Interrupted, StopFlag, Trainer, noise, run_epoch


def _kvstore(cfg, ctxs):
    """(kvstore for the Trainers, rank, number of workers)."""
    if cfg.kvstore == 'dist_sync':
        if 'DMLC_ROLE' not in os.environ:
            raise UserError('--kvstore dist_sync needs the scheduler and servers: start it with '
                            'python -m gluon_dcgan.launch --workers N --servers M -- python '
                            'run.py ...')
        import mxnet as mx
        kv = mx.kv.create('dist_sync')
        return kv, kv.rank, kv.num_workers
    if len(ctxs) == 1:
        return None, 0, 1
    default = 'device' if ctxs[0].device_type == 'gpu' else 'local'
    return cfg.kvstore or default, 0, 1


class EpochEnd:
    """What happens after each epoch on the chief worker: checkpoint, pictures, metrics."""

    def __init__(self, cfg, paths, trainer, fixed_noise, history, best=None):
        self.cfg, self.paths, self.trainer, self.fixed_noise = cfg, paths, trainer, fixed_noise
        self.best = best
        os.makedirs(paths.samples, exist_ok=True)
        self.figure = report.TrainingFigure(cfg.epochs, paths.training, with_fid=bool(best))
        for row in history:  # a resumed run's figure covers the whole run
            self.figure.add(row['epoch'], row['loss_D'], row['loss_G'], fid=row.get('fid'),
                            save=False)

    def save_checkpoint(self, state):
        t = self.trainer
        return checkpoint.save(self.paths.checkpoints, t.net_G, t.net_D, t.trainer_G,
                               t.trainer_D, self.fixed_noise, state)

    def __call__(self, epoch, state):
        row = state['history'][-1]
        if self.best and self.best.due(epoch):
            row['fid'] = self.best.score(epoch)  # recorded before the checkpoint is written
        path = self.save_checkpoint(state)
        if 'fid' in row and self.best.keep_if_best(epoch, row['fid'], path):
            print(f"epoch {epoch}: FID {row['fid']:.2f}, the best so far: kept in "
                  f"checkpoints/best and export/best", file=sys.stderr)
        fixed = report.to_pixels(self.trainer.generate(self.fixed_noise))
        report.save_png(report.grid(fixed, cols=7),
                        os.path.join(self.paths.samples, f'epoch_{epoch:03d}.png'))
        fresh = self.trainer.generate(
            noise(self.cfg.seed, epoch, SAMPLES, (21, self.cfg.latent_dim, 1, 1)))
        self.figure.add(epoch, row['loss_D'], row['loss_G'], fresh, fid=row.get('fid'))
        report.write_metrics(state['history'], self.paths.metrics)


def _start_state(cfg, paths, log):
    """The newest intact checkpoint to resume from (path), or None to start afresh."""
    if not cfg.resume:
        return None
    path = checkpoint.latest_valid(paths.checkpoints, log)
    if path is None and checkpoint.list_checkpoints(paths.checkpoints):
        log(f'warning: no intact checkpoint in {paths.checkpoints}; starting from epoch 1')
    return path


def _row(epoch, sums, num_workers):
    return {'epoch': epoch, 'loss_D': sums.loss_D / sums.examples,
            'loss_G': sums.loss_G / sums.examples,
            'examples_per_sec': sums.examples * num_workers / sums.seconds,
            'seconds': sums.seconds}


def export_run(net_G, cfg, folder, ctx):
    """export/: MXNet symbol + params, the verified ONNX model, manifest.json."""
    from ..export.mxnet_export import export_generator
    from ..export.onnx_export import onnx_writer
    return export_generator(net_G, folder, cfg.latent_dim, cfg.channels, cfg.image_size,
                            ctx=ctx, extra_writers=[onnx_writer(net_G, cfg.latent_dim, ctx)])


def fit(cfg, log=lambda msg: print(msg, file=sys.stderr), out=sys.stdout):
    """Train (or resume) the run described by `cfg`; return the exit code."""
    ctxs = resolve_contexts(cfg.ctx)
    if cfg.dtype == 'bfloat16' and ctxs[0].device_type == 'gpu':
        raise UserError(bf16_problem('gpu'))  # h4-bf16: --ctx auto picked a GPU
    kvstore, rank, num_workers = _kvstore(cfg, ctxs)
    chief = rank == 0
    paths = rundir.RunPaths(cfg.out_dir)
    if chief:  # other workers write nothing and trust rank 0's checks
        rundir.prepare(cfg, paths)
    resume_from = _start_state(cfg, paths, log)
    if resume_from:
        done = checkpoint.load_state(resume_from)
        if done['epoch'] >= cfg.epochs and os.path.isdir(paths.export):
            log(f'{paths.root} already finished {done["epoch"]} epoch(s); nothing to do '
                f'(raise --epochs to train longer)')
            return 0
    if cfg.fid_every and chief:
        from ..fid import check_weights_available
        check_weights_available(cfg.inception_params, os.path.join(cfg.data_root, 'models'))
    images = load_images(cfg, log)
    if num_workers > 1:
        log(f'worker {rank}/{num_workers}: {len(images) // num_workers} of {len(images)} '
            f'images per epoch')
    trainer = Trainer(cfg, ctxs, kvstore, rank, num_workers)
    fixed = noise(cfg.seed, 0, FIXED, (21, cfg.latent_dim, 1, 1))
    state = {'epoch': 0, 'batch': 0, 'history': [], 'partial': None}
    if resume_from:
        fixed, state = checkpoint.load(resume_from, trainer.net_G, trainer.net_D,
                                       trainer.trainer_G, trainer.trainer_D, ctxs)
        log(f'resuming from {resume_from}')
    state['config'] = dict(vars(cfg))
    epoch_end = None
    if chief:
        rundir.write_config(cfg, paths)
        report.write_metrics(state['history'], paths.metrics)
        report.save_real_samples(images, paths.real_samples)
        report.save_leaky_relu(paths.leaky_relu)
        best = None
        if cfg.fid_every:
            from .best import BestByFID
            best = BestByFID(cfg, paths, trainer, images, ctxs[0], export_run)
        epoch_end = EpochEnd(cfg, paths, trainer, fixed, state['history'], best)
    with StopFlag() as stop:
        for epoch in range(state['epoch'] + 1, cfg.epochs + 1):
            try:
                sums = run_epoch(trainer, images, epoch, stop, state['batch'], state['partial'])
            except Interrupted as exc:
                if chief:
                    state.update(batch=exc.next_batch, partial=exc.sums.partial(exc.next_batch))
                    path = epoch_end.save_checkpoint(state)
                    log(f'interrupted: saved {path}; continue with --resume')
                return exc.exit_code
            row = _row(epoch, sums, num_workers)
            state.update(epoch=epoch, batch=0, partial=None, history=state['history'] + [row])
            log(f"epoch {epoch:3d}/{cfg.epochs}  loss_D {row['loss_D']:.3f}  "
                f"loss_G {row['loss_G']:.3f}  {row['examples_per_sec']:.1f} examples/sec")
            if chief:
                epoch_end(epoch, state)
            if stop.signum:
                log('interrupted at the end of an epoch; its checkpoint is saved')
                return 128 + stop.signum
    # Every worker's last pushes and pulls must finish before any exits: a dist_sync
    # worker that quits with a push still queued leaves the others waiting forever.
    from mxnet import npx
    npx.waitall()
    if chief:
        report.write_gif(paths.samples, paths.gif)
        export_run(trainer.net_G, cfg, paths.export, ctxs[0])
    dump = os.environ.get('GLUON_DCGAN_DUMP_PARAMS')  # tests compare workers' weights
    if dump:
        trainer.net_G.save_parameters(f'{dump}-rank{rank}.params')
    last = state['history'][-1]
    print(f"loss_D {last['loss_D']:.3f}, loss_G {last['loss_G']:.3f}, "
          f"{last['examples_per_sec']:.1f} examples/sec on {describe_contexts(ctxs)}",
          file=out, flush=True)
    return 0
