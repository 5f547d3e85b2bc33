"""A whole training run in three stages: prepare, train (the chapter's loop), finish.

``fit(cfg)`` is what ``python run.py`` calls. It returns the process exit code.
``prepare`` runs every check before the run folder changes; an interrupt at any
stage ends with one truthful line about what was saved.
"""
import hashlib
import os
import sys

from ..config import Config
from ..data import load_images, loader
from ..errors import UserError
from ..export.run_export import export_run, exported_epochs
from ..flags import runnable
from ..memory import check_training_memory
from ..runtime import bf16_problem, describe_contexts, resolve_contexts
from ..seeds import Stream, noise
from . import checkpoint, report, rundir, tensorboard
from .epoch_end import EpochEnd
from .ema import EMA
from .hooks import EpochLog, Progress, StopOnSignal
from .loop import GAN, Diverged, Interrupted, StopFlag, new_state, train

# Fewer training steps than this and the samples are still noise: measured on the embedded
# sprites, 160 steps gave smudges (KID x1000 807 in EfficientNet-Lite0 features) and 960
# gave sprites a person recognises.
FEW_STEPS = 500
# What an interrupt outside the training loop leaves behind, by stage.
INTERRUPTED = {
    'checks': 'interrupted before training started: nothing was saved',
    'setup': 'interrupted before the first step; continue with --resume',
    'finish': 'interrupted during the export: training is complete and its last checkpoint is '
              'saved; run the same command with --resume to finish the export',
}


def _kvstore(cfg, ctxs):
    """(kvstore for the Trainers, rank, number of workers)."""
    if cfg.kvstore == 'dist_sync':
        if 'DMLC_ROLE' not in os.environ:
            launch, train = runnable('launch'), runnable('train')
            raise UserError(f'--kvstore dist_sync needs the scheduler and servers: start it with '
                            f'{launch} --workers N --servers M -- {train} ...')
        import mxnet as mx
        kv = mx.kv.create('dist_sync')
        return kv, kv.rank, kv.num_workers
    if len(ctxs) == 1:
        return None, 0, 1
    default = 'device' if ctxs[0].device_type == 'gpu' else 'local'
    return cfg.kvstore or default, 0, 1


def _check_resume(cfg, path, state, log):
    """Refuse a resume that would silently change the run; log the changes it may make."""
    try:
        old = Config.from_dict(state['config'])
    except (TypeError, AttributeError):
        raise UserError(f'{path} holds no readable config: resume is impossible; start '
                        f'afresh with --overwrite')
    error = rundir.model_mismatch(old, cfg, path)
    if error:
        raise error
    changed = [f for f in ('batch_size', 'seed') if getattr(old, f) != getattr(cfg, f)]
    if state['batch'] and changed:
        pairs = ', '.join(f"--{f.replace('_', '-')} {getattr(old, f)} -> {getattr(cfg, f)}"
                          for f in changed)
        raise UserError(f'cannot change {pairs} when resuming in the middle of epoch '
                        f'{state["epoch"] + 1} (its batches were drawn with the old values): '
                        f'resume with the old values; they may change at an epoch boundary')
    def rate(config, net):  # what each Trainer used: --lr-G/--lr-D, else --lr
        return getattr(config, f'lr_{net}') or config.lr
    changes = [f'--{f} {getattr(old, f):g} -> {getattr(cfg, f):g}' for f in ('lr', 'beta1')
               if getattr(old, f) != getattr(cfg, f)]
    changes += [f'--lr-{net} {rate(old, net):g} -> {rate(cfg, net):g}' for net in 'GD'
                if rate(old, net) != rate(cfg, net) and old.lr == cfg.lr]
    if changes:
        log(f'resuming with new Adam settings from here on: {", ".join(changes)}')


def _check_same_images(state, count, log):
    """A mid-epoch resume needs the images its batches were drawn from; at an epoch
    boundary a changed dataset is allowed, and said."""
    before = state.get('images')
    if before is None or before == count:
        return
    if state['batch']:
        raise UserError(f'the data changed since the checkpoint ({before} -> {count} images), '
                        f'which stopped in the middle of epoch {state["epoch"] + 1}: restore '
                        f'the images to resume, or use --overwrite to start afresh')
    log(f'note: the data changed since the checkpoint ({before} -> {count} images)')


def _check_scorable(cfg, count):
    """--eval-every's coverage needs k + 1 real images (k nearest neighbours and itself)."""
    from ..quality.metrics import K
    if cfg.eval_every and count < K + 1:
        raise UserError(f'--eval-every scores coverage, which needs at least {K + 1} real '
                        f'images, and the data has {count}: use more images, or leave out '
                        f'--eval-every')


def _start_state(cfg, paths, log):
    """(checkpoint path, its state) to resume from, or (None, None) to start afresh."""
    if not cfg.resume:
        return None, None
    path = checkpoint.latest_valid(paths.checkpoints, log)
    if path is None:
        if checkpoint.list_checkpoints(paths.checkpoints):
            log(f'warning: no intact checkpoint in {paths.checkpoints}; starting from epoch 1')
        return None, None
    state = checkpoint.load_state(path)
    _check_resume(cfg, path, state, log)
    return path, state


class Run:
    """Everything one training run holds; `stage` says what an interrupt would leave."""

    def __init__(self, cfg, log):
        self.cfg, self.log, self.stage = cfg, log, 'checks'
        self.ctxs = resolve_contexts(cfg.ctx)
        if cfg.dtype == 'bfloat16' and self.ctxs[0].device_type == 'gpu':
            raise UserError(bf16_problem('gpu'))  # --ctx auto picked a GPU
        self.kvstore, self.rank, self.num_workers = _kvstore(cfg, self.ctxs)
        self.chief = self.rank == 0  # other workers write nothing and trust rank 0's checks
        self.paths = rundir.RunPaths(cfg.out_dir)
        self.epoch_end = None
        # The scores' feature network, loaded during the checks: EfficientNet-Lite0
        # (--eval-every) or FID's InceptionV3 (--fid-every).
        self.scoring_net = None


def prepare(run):
    """Run every check, then set up the run folder. Returns False if there is nothing to do."""
    cfg, paths, log = run.cfg, run.paths, run.log
    # Here, not in the config's checks: the estimate builds the chapter's nets, so MXNet
    # must be loaded, after the process set-up that must come before it.
    check_training_memory(cfg.n_G, cfg.n_D, cfg.latent_dim, cfg.channels, cfg.batch_size,
                          cfg.ctx)
    if run.chief:
        rundir.lock(paths.root)
        rundir.check_start(cfg, paths, log)
    resume_from, done = _start_state(cfg, paths, log)
    if done and done['epoch'] >= cfg.epochs and exported_epochs(paths.export) == done['epoch']:
        log(f'{paths.root} already finished {done["epoch"]} epoch(s); nothing to do '
            f'(raise --epochs to train longer)')
        return False
    if cfg.fid_every and run.chief:  # read now: weights that do not load are refused here,
        from ..quality.fid import load_inception  # before --overwrite removes anything
        run.scoring_net = load_inception(cfg.inception_params,
                                         os.path.join(cfg.data_root, 'models'), run.ctxs[0])
    if cfg.eval_every and run.chief:  # likewise: a missing weights package is refused here
        from ..quality.efficientnet import load
        run.scoring_net = load(run.ctxs[0])
    run.images = load_images(cfg, log)
    _check_scorable(cfg, len(run.images))
    if done:
        _check_same_images(done, len(run.images), log)
    if run.num_workers > 1:
        log(f'worker {run.rank}/{run.num_workers}: {len(run.images) // run.num_workers} of '
            f'{len(run.images)} images per epoch')
    run.gan = GAN(cfg, run.ctxs, run.kvstore, run.rank, run.num_workers)
    run.fixed = noise(cfg.seed, Stream.FIXED, shape=(21, cfg.latent_dim, 1, 1))
    run.state = new_state()
    if resume_from:
        run.fixed, run.state = checkpoint.load(resume_from, run.gan)
        log(f'resuming from {resume_from}')
    run.state['config'] = dict(vars(cfg))
    run.state['images'] = len(run.images)  # what a resume checks the data against
    run.signals.check()  # a signal whose raise was lost during the checks stops the run here
    if run.chief:  # every check has passed: from here on the run folder changes
        run.stage = 'setup'
        rundir.clear_old_run(cfg, paths)
        rundir.write_config(cfg, paths)
        report.write_metrics(run.state['history'], paths.metrics)
        report.save_real_samples(run.images, paths.real_samples)
        report.save_leaky_relu(paths.leaky_relu)
        best = None
        if cfg.fid_every or cfg.eval_every:  # the real images' side is computed here, once
            from .best import keeper
            best = keeper(cfg, paths, run.gan, run.images, run.ctxs[0], run.scoring_net, log)
        run.epoch_end = EpochEnd(cfg, paths, run.gan, run.fixed, run.state['history'], log,
                                 best)
    return True


def _announce(run):
    """One line before training starts (tests and users wait for it), and a note on any
    images each epoch leaves out."""
    cfg, state = run.cfg, run.state
    batches = loader.num_batches(len(run.images), cfg.batch_size, run.num_workers,
                                 len(run.ctxs))
    rest = (len(run.images) // run.num_workers) % cfg.batch_size
    if 0 < rest < len(run.ctxs):
        run.log(f'note: each epoch leaves out its last {rest} image(s): fewer than the '
                f'{len(run.ctxs)} devices, which need one each')
    run.log(f'training epochs {state["epoch"] + 1}-{cfg.epochs} on {len(run.images)} images, '
            f'{batches} batches per epoch' +
            (f', from batch {state["batch"] + 1}' if state['batch'] else ''))
    steps = batches * cfg.epochs
    if steps < FEW_STEPS:
        # Short, to fit 80 columns: 'note: only 40 steps (20 x 2 batches); a DCGAN ...'
        run.log(f'note: only {steps} steps ({cfg.epochs} x {batches} batches); a DCGAN needs '
                f'{FEW_STEPS}+: raise --epochs')


def run_training(run):
    """The chapter's train() with the run's hooks: an exit code if interrupted, else None."""
    cfg, state, log = run.cfg, run.state, run.log
    run.signals.check()
    if state['epoch'] < cfg.epochs:
        _announce(run)
    progress = Progress(cfg.epochs, run.num_workers, cfg.progress)
    with StopFlag() as stop, tensorboard.hooks(cfg, state, run.epoch_end, run.chief) as logs:
        averaging = [EMA(run.gan.net_G, run.gan.net_G_ema, cfg.ema)] if cfg.ema else []
        chief_only = [run.epoch_end] if run.chief else []  # checkpoints, figures, metrics
        hooks = [*averaging, progress, EpochLog(cfg.epochs, log), *chief_only, *logs,
                 StopOnSignal(stop)]
        try:
            train(run.gan, run.images, cfg.epochs, state, hooks)
        except Interrupted as exc:
            progress.close()  # before the line
            if exc.sums is None:
                log(f'interrupted at the end of epoch {state["epoch"]}; its checkpoint is '
                    f'saved: continue with --resume')
            elif run.chief:
                state.update(batch=exc.next_batch, partial=exc.sums.partial(exc.next_batch))
                path = run.epoch_end.save_checkpoint(state)
                log(f'interrupted: saved {path}; continue with --resume')
            else:
                log('interrupted; continue with --resume')
            return exc.exit_code
        finally:
            progress.close()
    return None


def weights_digest(net):
    """The first 12 hex digits of SHA-256 over `net`'s trainable parameters.

    Hashes each parameter's structural name (as in net_G.params) and float32 bytes,
    in sorted name order. BatchNorm running statistics are left out: every worker
    keeps its own, from its own images.
    """
    digest = hashlib.sha256()
    for name, param in sorted(net._collect_params_with_prefix().items()):
        if param.grad_req != 'null':
            digest.update(name.encode())
            digest.update(param.data().asnumpy().tobytes())
    return digest.hexdigest()[:12]


def finish(run, out, on_complete=None):
    """Export the generator, print the chapter's final line, then (the chief) on_complete()."""
    run.stage = 'finish'
    # Every worker's last pushes and pulls must finish before any exits: a dist_sync
    # worker that quits with a push still queued leaves the others waiting forever.
    from mxnet import npx
    npx.waitall()
    if run.chief:
        report.write_gif(run.paths.samples, run.paths.gif)
        export_run(run.gan.sampler, run.cfg, run.paths.export, run.ctxs[0], run.state['epoch'])
    if run.num_workers > 1:  # dist_sync workers must end with the same weights: show it
        run.log(f'worker {run.rank}/{run.num_workers}: generator weights sha256 '
                f'{weights_digest(run.gan.net_G)}')
    print(final_line(run.state, run.ctxs), file=out, flush=True)
    if on_complete is not None and run.chief:
        on_complete()


def final_line(state, ctxs):
    """The chapter's last line, 'loss_D 0.035, loss_G 6.190, 2583.0 examples/sec on gpu(0)',
    from the last epoch of `state`'s history."""
    last = state['history'][-1]
    return (f"loss_D {last['loss_D']:.3f}, loss_G {last['loss_G']:.3f}, "
            f"{last['examples_per_sec']:.1f} examples/sec on {describe_contexts(ctxs)}")


def _diverged(run, exc):
    kept = checkpoint.latest_valid(run.paths.checkpoints, lambda m: None)
    tail = (f'the last good checkpoint {os.path.basename(kept)} is kept: resume with --resume, '
            f'perhaps with a lower --lr' if kept else
            'no checkpoint was saved yet: start again with a lower --lr (and --overwrite)')
    return UserError(f'{exc}; {tail}', exit_code=3)


def fit(cfg, log=lambda msg: print(msg, file=sys.stderr), out=None, on_complete=None):
    """Train (or resume) the run described by `cfg`; return the exit code.

    `out` (default: sys.stdout as it is at the call, not at import) gets the final line;
    `on_complete` is called after it, by the chief of a run that completed.
    """
    out = sys.stdout if out is None else out
    # Outside the loop SIGINT and SIGTERM raise Interrupted (the loop itself uses a flag).
    with StopFlag(raising=True) as signals:
        run = Run(cfg, log)
        run.signals = signals
        try:
            if not prepare(run):
                return 0
            code = run_training(run)
            if code is not None:
                return code
            finish(run, out, on_complete)
        except Interrupted as exc:
            log(INTERRUPTED[run.stage])
            return exc.exit_code
        except Diverged as exc:
            raise _diverged(run, exc)
        except Exception:
            if signals.signum:  # e.g. an import the signal broke: the signal is the cause
                log(INTERRUPTED[run.stage])
                return 128 + signals.signum
            raise
        finally:
            if run.stage == 'checks' and run.chief:
                rundir.unlock_if_unused(run.paths.root)
    return 0
