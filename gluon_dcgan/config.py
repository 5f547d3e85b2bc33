"""The one configuration object: built from the command line, validated, saved with every run.

Flags map one-to-one onto the fields of ``Config`` (``--batch-size`` -> ``batch_size``).
"""
import argparse
import dataclasses
import json
import os

from . import __version__
from .errors import UserError
from .flags import (OneLineParser, flag, int_in, mxnet_path, non_empty_path, non_negative_int,
                    positive_float, positive_int, program, seed_int, unit_float)
from .runtime import bf16_problem, parse_ctx_spec, usable_cores

DEFAULT_DATA_ROOT = os.path.join(
    os.environ.get('XDG_CACHE_HOME', os.path.join(os.path.expanduser('~'), '.cache')),
    'gluon_dcgan')
# Changing any of these changes the model or the data, so a resume must not.
BUILT_IN_DATA = ('pokemon', 'synthetic', 'fashion-mnist')  # --data names that are not paths
MODEL_FIELDS = ('data', 'limit', 'latent_dim', 'n_G', 'n_D', 'channels', 'image_size',
                'd_activation', 'd_input_norm', 'alpha', 'crop')
# --data synthetic draws its sprites in memory: 16384 of them are 200 MB and about 5 s.
MAX_SYNTHETIC_IMAGES = 16384
MAX_WORKERS = 64    # decoding threads; more only contend for the same cores
MAX_EPOCHS = 10 ** 6  # more overflows the figures' axes; no run gets near it
MAX_FID_NUM = 100_000  # as evaluate --num: far beyond what FID needs, and bounded memory
# --eval-num: coverage needs k + 1 = 6 images a side (quality/metrics.py), KID's halves 2
# or more; 10,000 images are about 3 minutes of EfficientNet-Lite0 features on 2 cores,
# at every score.
MIN_EVAL_NUM, MAX_EVAL_NUM = 10, 10_000
ADAM_BETA2 = 0.999  # MXNet's default, which the chapter keeps
# The folders of a run that a run empties or replaces (train/rundir.py's RUN_FOLDERS, a
# layer above this module; tests/test_tensorboard.py keeps the two equal).
RUN_FOLDERS = ('samples', 'checkpoints', 'export')
TENSORBOARD_MISSING = ("--tensorboard needs tensorboardX, which is not installed: pip install "
                       "'gluon-dcgan[tensorboard]' (in a checkout: make setup)")


def default_num_workers():
    """Decoding threads: one per usable core, at most 4 (d2l's fixed 4 oversubscribes 2 cores)."""
    return max(1, min(4, usable_cores()))


@dataclasses.dataclass
class Config:
    """Everything a training run depends on; saved as config.json and in each checkpoint."""
    # data
    data: str = 'pokemon'            # pokemon | synthetic | fashion-mnist | PATH to an image folder
    data_root: str = DEFAULT_DATA_ROOT  # download and decode cache
    limit: int | None = None         # use only the first N images
    num_workers: int = dataclasses.field(default_factory=default_num_workers)  # decode threads
    skip_bad_images: bool = False    # drop unreadable images instead of stopping
    image_size: int = 64             # the chapter's Resize(64); the nets are built for 64x64
    crop: str = 'none'               # none: stretch as Resize(64) does | center: central square
    # model (the chapter's values)
    latent_dim: int = 100
    n_G: int = 64
    n_D: int = 64
    channels: int = 3                # 1 for Fashion-MNIST
    d_activation: str = 'leaky'      # leaky | relu (exercise 1)
    d_input_norm: str = 'batchnorm'  # batchnorm | none: D's first block (model.net_D)
    alpha: float = 0.2               # leaky ReLU slope
    # training (the chapter's values)
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.005
    beta1: float = 0.5
    seed: int = 0                    # same seed, same run on CPU
    dtype: str = 'float32'           # float32 | bfloat16: the convolutions' arithmetic (CPU
                                     # with avx512_bf16); weights and checkpoints stay fp32
    # recipes for small data (off in the chapter's recipe; docs/quality.md measures them)
    recipe: str = 'chapter'          # chapter | small-data: a preset of the four below
    diffaugment: str | None = None   # DiffAugment policies, e.g. color,translation,cutout
    ema: float = 0.0                 # decay of the generator's weight average (0: off)
    lr_G: float | None = None        # the generator's Adam learning rate (None: --lr)
    lr_D: float | None = None        # the discriminator's (None: --lr); TTUR sets them apart
    # where and how
    ctx: str = 'auto'                # auto | cpu | gpu | gpu:N | gpu:0,1 | cpu:0,1
    kvstore: str | None = None       # None picks device/local; dist_sync for several hosts
    out_dir: str = 'outputs'
    resume: bool = False
    overwrite: bool = False
    progress: bool = True            # progress bar on stderr
    fid_every: int = 0               # score FID every K epochs (0: never)
    fid_num: int = 1000              # generated and real images per FID score
    inception_params: str | None = None  # local InceptionV3 weights for FID
    eval_every: int = 0              # score KID in EfficientNet-Lite0 features every K epochs
    eval_num: int = 500              # generated and real images per --eval-every score
    tensorboard: str | None = None   # a folder for TensorBoard event files (the extra)

    def to_json(self):
        """The config as a JSON text (stable key order)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        """Rebuild a config saved by ``to_json``; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @property
    def d_input_batch_norm(self):
        """net_D's input_norm: whether D's first block has the chapter's BatchNorm."""
        return self.d_input_norm == 'batchnorm'

    def model_differences(self, other):
        """Names of the model/data fields in which two configs differ."""
        return [f for f in MODEL_FIELDS if getattr(self, f) != getattr(other, f)]


POLICIES = ('color', 'translation', 'cutout')  # DiffAugment's (train/augment.py)
# --recipe small-data: what each field becomes unless its flag is given (docs/quality.md).
RECIPES = {'chapter': {},
           'small-data': {'diffaugment': 'color,translation,cutout', 'ema': 0.999,
                          'lr_G': 2e-4, 'lr_D': 2e-4}}
_worker_count, _epoch_count = int_in(0, MAX_WORKERS), int_in(1, MAX_EPOCHS)
_fid_count = int_in(2, MAX_FID_NUM)  # FID compares spreads: one image has none
_eval_count = int_in(MIN_EVAL_NUM, MAX_EVAL_NUM)


def _beta(text):
    value = unit_float(text)
    if value == 1:
        raise argparse.ArgumentTypeError('must be in [0, 1)')
    return value


def _ema(text):
    value = unit_float(text)
    if value == 1:
        raise argparse.ArgumentTypeError('must be in [0, 1): 0 is off, 0.999 is usual')
    return value


def parse_policies(text):
    """'cutout,color' -> ('color', 'cutout') (always applied in POLICIES' order)."""
    names = tuple(n.strip() for n in text.split(',') if n.strip())
    unknown = [n for n in names if n not in POLICIES]
    if unknown or len(set(names)) != len(names) or not names:
        raise ValueError(f'--diffaugment takes a comma-separated list of {", ".join(POLICIES)} '
                         f'(each once), got {text!r}')
    return tuple(p for p in POLICIES if p in names)


def _policies(text):
    try:
        return ','.join(parse_policies(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace('--diffaugment takes', 'takes'))


def _ctx(text):
    try:
        parse_ctx_spec(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return text


def add_data_flags(parser, defaults):
    """Flags that choose and load the training images (the 'data' group of --help)."""
    parser = parser.add_argument_group('data')
    flag(parser, 'data', default=defaults.data, metavar='pokemon|synthetic|fashion-mnist|PATH',
         help="dataset: 'pokemon' (download, the chapter's), 'synthetic' (embedded, offline), "
              "'fashion-mnist', or a folder of images in class subfolders (default: %(default)s)")
    flag(parser, 'data-root', type=mxnet_path, default=defaults.data_root, metavar='DIR',
         help='download and decode cache (default: %(default)s)')
    flag(parser, 'limit', type=positive_int, default=None, metavar='N',
         help=f'use only the first N images (at most {MAX_SYNTHETIC_IMAGES} with '
              f'--data synthetic)')
    flag(parser, 'num-workers', type=_worker_count, default=defaults.num_workers,
         metavar='N', help=f'image decoding threads, at most {MAX_WORKERS} (default: '
                           f'%(default)s, from the core count)')
    flag(parser, 'skip-bad-images', action='store_true',
         help='leave out unreadable image files instead of stopping')
    flag(parser, 'crop', choices=('none', 'center'), default=defaults.crop,
         help="non-square images: none stretches them to square, as the chapter's "
              "Resize(64) does; center uses their central square (default: %(default)s)")


def add_model_flags(parser, defaults):
    """Flags that shape the two networks (the 'model' group)."""
    parser = parser.add_argument_group('model')
    flag(parser, 'latent-dim', type=positive_int, default=defaults.latent_dim, metavar='N',
         help='length of the noise vector z (default: %(default)s)')
    flag(parser, 'n-G', type=positive_int, default=defaults.n_G, metavar='N',
         help='generator width: its last G_block has N channels (default: %(default)s)')
    flag(parser, 'n-D', type=positive_int, default=defaults.n_D, metavar='N',
         help='discriminator width: its first D_block has N channels (default: %(default)s)')
    flag(parser, 'channels', type=int, choices=(1, 3), default=defaults.channels,
         help='image channels: 3 (RGB) or 1 (Fashion-MNIST) (default: %(default)s)')
    flag(parser, 'd-activation', choices=('leaky', 'relu'), default=defaults.d_activation,
         help="discriminator activation, exercise 1 (default: %(default)s)")
    flag(parser, 'd-input-norm', choices=('batchnorm', 'none'), default=defaults.d_input_norm,
         help="the discriminator's first block: batchnorm, the chapter's, or none, the DCGAN "
              "paper's (a convolution with a bias, no BatchNorm), which lets D see the "
              "fakes' contrast (docs/quality.md) (default: %(default)s)")
    flag(parser, 'alpha', type=unit_float, default=defaults.alpha,
         help='leaky ReLU slope in [0, 1] (default: %(default)s)')


def add_train_flags(parser, defaults):
    """Flags of the optimisation, the run folder, the devices and quality scores, in groups."""
    group = parser.add_argument_group('training')
    flag(group, 'epochs', type=_epoch_count, default=defaults.epochs,
         help=f'training epochs, at most {MAX_EPOCHS} (default: %(default)s)')
    flag(group, 'batch-size', type=positive_int, default=defaults.batch_size,
         help='examples per step (default: %(default)s)')
    flag(group, 'lr', type=positive_float, default=defaults.lr,
         help='Adam learning rate for both nets (default: %(default)s)')
    flag(group, 'beta1', type=_beta, default=defaults.beta1,
         help="Adam beta1 (default: %(default)s, the chapter's)")
    flag(group, 'seed', type=seed_int, default=defaults.seed,
         help='seed for data order, noise and weights, in [0, 2**32) (default: %(default)s)')
    flag(group, 'dtype', choices=('float32', 'bfloat16'), default=defaults.dtype,
         help='convolution arithmetic: bfloat16 needs a CPU with avx512_bf16; weights, '
              'optimizer, BatchNorm statistics, losses and files stay float32 '
              '(default: %(default)s)')
    group = parser.add_argument_group('recipes for small data (off by default)')
    flag(group, 'recipe', choices=tuple(RECIPES), default=defaults.recipe,
         help="chapter: the chapter's training, exactly; small-data: DiffAugment, an EMA "
              "generator and lr 2e-4 (measured in docs/quality.md); any flag below given "
              "as well wins (default: %(default)s)")
    flag(group, 'diffaugment', type=_policies, default=None, metavar='POLICIES',
         help='DiffAugment on every image D sees, real and fake: a comma-separated list '
              'of color, translation, cutout')
    flag(group, 'ema', type=_ema, default=None, metavar='DECAY',
         help='samples, exports and evaluation use an exponential moving average of the '
              "generator's weights with this decay, e.g. 0.999 (default: off)")
    flag(group, 'lr-G', type=positive_float, default=None, metavar='LR',
         help="the generator's Adam learning rate (default: --lr)")
    flag(group, 'lr-D', type=positive_float, default=None, metavar='LR',
         help="the discriminator's Adam learning rate (default: --lr)")
    group = parser.add_argument_group('output')
    flag(group, 'out-dir', type=mxnet_path, default=defaults.out_dir, metavar='DIR',
         help='run folder for figures, metrics, checkpoints, export (default: %(default)s)')
    flag(group, 'resume', action='store_true',
         help='continue the run in --out-dir from its last complete checkpoint')
    flag(group, 'overwrite', action='store_true',
         help='start afresh in an --out-dir that already holds a run, deleting it')
    flag(group, 'tensorboard', type=non_empty_path, default=None, metavar='DIR',
         help="also write the metrics, D's outputs, the scores and each epoch's samples as "
              "TensorBoard events into DIR (needs the tensorboard extra)")
    group.add_argument('--no-progress', dest='progress', action='store_false',
                       help='no progress bars (they are drawn only on a terminal anyway)')
    group = parser.add_argument_group('distributed')
    flag(group, 'ctx', type=_ctx, default=defaults.ctx,
         help='auto, cpu, gpu, gpu:N, or several devices: gpu:0,1 / cpu:0,1 (default: %(default)s)')
    flag(group, 'kvstore', choices=('device', 'local', 'dist_sync'), default=None,
         help='gradient aggregation: device (GPUs), local (CPUs), dist_sync (several hosts, '
              'start with gluon_dcgan.launch) (default: picked from --ctx)')
    group = parser.add_argument_group('quality')
    flag(group, 'eval-every', type=non_negative_int, default=0, metavar='K',
         help='every K epochs and at the last, score KID and coverage in ImageNet '
              'EfficientNet-Lite0 features (offline) and keep the best generator by KID '
              '(default: off)')
    flag(group, 'eval-num', type=_eval_count, default=defaults.eval_num, metavar='N',
         help=f'images per side for --eval-every, {MIN_EVAL_NUM} to {MAX_EVAL_NUM:,} '
              f'(default: %(default)s)')
    flag(group, 'fid-every', type=non_negative_int, default=0, metavar='K',
         help='score FID every K epochs and keep the best generator (default: off)')
    flag(group, 'fid-num', type=_fid_count, default=defaults.fid_num, metavar='N',
         help=f'images per side for --fid-every, 2 to {MAX_FID_NUM:,} (default: %(default)s)')
    flag(group, 'inception-params', type=mxnet_path, default=None, metavar='FILE',
         help='InceptionV3 weights saved by save_parameters, for FID offline')


def train_parser(prog=None, description=None, **kwargs):
    """The parser for training (and for commands that train, such as ablate-activation).

    `kwargs` go to the parser (cli gives the training command its usage and epilog)."""
    defaults = Config()
    parser = OneLineParser(
        prog=prog or program(), description=description or (
            "Train d2l's DCGAN (chapter 'Deep Convolutional GAN') with MXNet Gluon."),
        **kwargs)
    parser.add_argument('--version', action='version', version=f'gluon_dcgan {__version__}')
    add_data_flags(parser, defaults)
    add_model_flags(parser, defaults)
    add_train_flags(parser, defaults)
    return parser


def apply_recipe(values):
    """`values` (the parsed flags) with the recipe's settings where no flag gave one."""
    values = dict(values)
    for name, value in RECIPES[values.get('recipe', 'chapter')].items():
        if values.get(name) is None:
            values[name] = value
    if values.get('ema') is None:
        values['ema'] = 0.0
    return values


def config_from_args(args):
    """Build and cross-check the Config from parsed flags."""
    cfg = Config.from_dict(apply_recipe(vars(args)))
    if cfg.resume and cfg.overwrite:
        raise UserError('--resume and --overwrite contradict each other: pick one')
    if cfg.data == 'fashion-mnist' and cfg.channels != 1:
        raise UserError('Fashion-MNIST is greyscale: add --channels 1')
    if cfg.data not in BUILT_IN_DATA and not os.path.isdir(cfg.data):
        what = 'is not a folder' if os.path.exists(cfg.data) else 'does not exist'
        raise UserError(f"--data {cfg.data!r} {what}: give pokemon, synthetic, fashion-mnist "
                        f"or a folder of images")
    check_bf16(cfg)
    for lr in {cfg.lr, cfg.lr_G or cfg.lr, cfg.lr_D or cfg.lr}:
        check_adam_rate(lr, cfg.beta1)
    if cfg.eval_every and cfg.fid_every:
        raise UserError('--eval-every and --fid-every are exclusive (each keeps '
                        'checkpoints/best, by KID in EfficientNet-Lite0 features or by FID on '
                        'InceptionV3): give one of them')
    if cfg.fid_every and cfg.fid_every > cfg.epochs:
        raise UserError(f'--fid-every {cfg.fid_every} is more than --epochs {cfg.epochs}: '
                        f'no epoch would be scored')
    devices = len(parse_ctx_spec(cfg.ctx)[1])
    if devices > cfg.batch_size:
        raise UserError(f'--batch-size {cfg.batch_size} is smaller than the {devices} devices '
                        f'of --ctx {cfg.ctx}: each device needs at least one example a step')
    check_synthetic_limit(cfg)
    if cfg.tensorboard is not None:
        check_tensorboard(cfg)
    if cfg.data != 'synthetic' or cfg.fid_every:  # synthetic data needs no downloads or cache
        check_data_root(cfg.data_root)
    return cfg


def check_bf16(cfg):
    """Refuse --dtype bfloat16 where it cannot run: no avx512_bf16 or oneDNN, a GPU, dist_sync."""
    if cfg.dtype != 'bfloat16':
        return
    problem = bf16_problem(parse_ctx_spec(cfg.ctx)[0], channels=cfg.channels)
    if problem:
        raise UserError(problem)
    if cfg.kvstore == 'dist_sync':  # its parameter servers abort on the bf16 nets' arrays
        raise UserError('--dtype bfloat16 is single-machine only: use --dtype float32 with '
                        '--kvstore dist_sync')


def check_adam_rate(lr, beta1):
    """Refuse an --lr whose Adam step size float32 cannot hold (MXNet: 'Out of range value').

    MXNet's Adam passes lr * sqrt(1 - beta2**t) / (1 - beta1**t) to its float32 kernel; over
    the steps t that factor lies in [sqrt(1 - beta2), 1 / (1 - beta1)].
    """
    import numpy
    f32 = numpy.finfo(numpy.float32)
    low, high = f32.tiny / (1 - ADAM_BETA2) ** 0.5, float(f32.max) * (1 - beta1)
    if lr < low:  # bounds printed 6% inside, so that their 2 digits stay valid
        raise UserError(f'--lr {lr} is too small for MXNet\'s float32 Adam step '
                        f'(below its smallest normal number): use --lr {low * 1.06:.1e} or more')
    if lr > high:
        raise UserError(f'--lr {lr} with --beta1 {beta1} is too large for MXNet\'s float32 '
                        f'Adam step (above its largest number): use --lr {high * 0.94:.1e} or less')


def check_synthetic_limit(cfg):
    """Refuse more synthetic sprites than MAX_SYNTHETIC_IMAGES (they are drawn in memory)."""
    if cfg.data == 'synthetic' and cfg.limit and cfg.limit > MAX_SYNTHETIC_IMAGES:
        raise UserError(f'--limit {cfg.limit} is above the {MAX_SYNTHETIC_IMAGES} images '
                        f'--data synthetic can draw: lower it, or train on a folder of images')


def check_data_root(data_root):
    """Refuse a --data-root that is a file or cannot be written, before any download."""
    check_folder_to_write('--data-root', data_root, 'for downloads and the decode cache')


def check_folder_to_write(name, folder, purpose):
    """Refuse a folder flag whose value is a file, or lies in one, or cannot be written."""
    probe = os.path.abspath(folder)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # it will be created inside its nearest existing parent
    if not os.path.isdir(probe):
        where = ('is not a folder' if probe == os.path.abspath(folder)
                 else f'is inside {probe!r}, which is not a folder')
        raise UserError(f'{name} {folder!r} {where}: give a folder {purpose}')
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f'{name} {folder!r} cannot be written ({probe!r} is read-only to '
                        f'you): give a folder you can write, or fix its permissions')


def check_tensorboard(cfg):
    """--tensorboard DIR: tensorboardX is installed, and DIR is a folder that can be written,
    outside the run's folders that --overwrite empties and the export replaces."""
    try:
        import tensorboardX  # noqa: F401  (the extra; train/tensorboard.py writes with it)
    except ImportError:
        raise UserError(TENSORBOARD_MISSING)
    check_folder_to_write('--tensorboard', cfg.tensorboard, 'for the TensorBoard event files')
    real = os.path.realpath(cfg.tensorboard)
    for name in RUN_FOLDERS:
        folder = os.path.realpath(os.path.join(cfg.out_dir, name))
        if os.path.commonpath([real, folder]) == folder:
            raise UserError(f'--tensorboard {cfg.tensorboard!r} is inside the run\'s {name}/ '
                            f'folder, which a run empties or replaces: choose another '
                            f'folder, e.g. {os.path.join(cfg.out_dir, "tensorboard")!r}')


def parse_train_args(argv):
    """Parse and validate training flags into a Config."""
    return config_from_args(train_parser().parse_args(argv))
