"""run.py evaluate: an exported generator's images against real images.

By default in ImageNet EfficientNet-Lite0 features, which install with the package and
so work offline: the quality report of quality/report.py (KID and FD in those
features, precision, recall, density, coverage, 1-NN accuracy, NDB, the real-vs-real
floor, memorisation), written as quality.json, quality.md and quality.png beside the
export, with one summary line. `--features inception` gives FID and KID on the Gluon
model zoo's InceptionV3, for users who have its weights. The real images' features are
cached under DATA_ROOT, keyed by the images, so a second export scores faster.
"""
import os
import sys

from ..config import BUILT_IN_DATA, MAX_FID_NUM, Config, add_data_flags
from ..errors import UserError
from ..flags import OneLineParser, flag, int_in, program

MAX_NUM = MAX_FID_NUM  # images per side, the same bound as training's --fid-num


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _parse(argv):
    from ..flags import positive_int, seed_int
    defaults = Config(data='pokemon')
    p = OneLineParser(prog=program('evaluate'), description=(
        "Score an export's images against real images: KID, FD, precision, recall, "
        'density, coverage, 1-NN and NDB in ImageNet EfficientNet-Lite0 features (offline; '
        'not FIDs), beside the real-vs-real floor; or FID and KID on InceptionV3 '
        '(--features inception).'))
    p.add_argument('--export', required=True, metavar='DIR', help="a run's export/ folder")
    p.add_argument('--num', type=int_in(1, MAX_NUM), default=5000,
                   help=f'images per side, at most {MAX_NUM:,} (default: %(default)s; fewer '
                        f'real ones if the data is smaller)')
    p.add_argument('--seed', type=seed_int, default=0, help='noise seed (default: %(default)s)')
    p.add_argument('--features', choices=('efficientnet', 'inception'), default=None,
                   help='efficientnet: the offline quality report in ImageNet '
                        'EfficientNet-Lite0 features; inception: FID and KID on InceptionV3 '
                        '(needs its weights) (default: inception if --inception-params is '
                        'given, else efficientnet)')
    flag(p, 'overwrite', action='store_true',
         help='replace quality.* files of yours beside the export')
    flag(p, 'inception-params', metavar='FILE',
         help='InceptionV3 weights from save_parameters (default: pretrained, '
              'downloaded once into DATA_ROOT/models)')
    flag(p, 'batch-size', type=positive_int, default=32,
         help='images per Inception pass (default: %(default)s)')
    p.add_argument('--ctx', default='cpu',
                   help='MXNet device: cpu, gpu, gpu:N or auto; the first one of a list is '
                        'used (default: %(default)s)')
    p.add_argument('--no-progress', dest='progress', action='store_false',
                   help='no progress bars (none are drawn when stderr is not a terminal)')
    add_data_flags(p, defaults)
    return p.parse_args(argv)


def _real_images(args, channels):
    from ..data import load_images
    cfg = Config(data=args.data, data_root=args.data_root, limit=args.limit, batch_size=1,
                 num_workers=args.num_workers, skip_bad_images=args.skip_bad_images,
                 channels=channels)
    if cfg.data not in BUILT_IN_DATA and not os.path.isdir(cfg.data):
        raise UserError(f'--data {cfg.data!r} does not exist: give pokemon, synthetic, '
                        f'fashion-mnist or a folder of images')
    real = load_images(cfg, log=_log)[:args.num]
    if len(real) < 2:
        raise UserError(f'--data {args.data!r} has {len(real)} image(s): FID and KID need at '
                        f'least 2')
    return real


def _inception(args, net_G, manifest, ctx, fake):
    from ..quality import fid
    real = _real_images(args, channels=manifest['output_shape'][1])
    models = os.path.join(args.data_root, 'models')
    net = fid.load_inception(args.inception_params, models, ctx)
    real_feats, real_stats = fid.real_statistics(
        net, real, fid.weights_file(args.inception_params, models),
        os.path.join(args.data_root, 'fid-stats'), ctx, args.batch_size, args.progress, _log)
    fake_feats = fid.inception_features(net, fake, ctx, args.batch_size, args.progress,
                                        desc='generated images')
    score = fid.frechet_distance(*fid.statistics(fake_feats), *real_stats)
    kid, kid_std = fid.kernel_inception_distance(real_feats, fake_feats)
    print(f'FID {score:.6g}, KID {kid:.4g} ± {kid_std:.2g} '
          f'({len(fake)} generated, {len(real)} real images)')


def _report(args, manifest, ctx, fake):
    from . import outputs
    from ..quality import report as quality
    # Beside the export: export/ holds an export only.
    folder = os.path.dirname(os.path.abspath(args.export))
    outputs.check_replaceable(folder, quality.FILES, 'evaluate', args.overwrite)
    real = _real_images(args, channels=manifest['output_shape'][1])
    if len(real) < 2 * (quality.metrics.K + 1) or len(fake) < quality.metrics.K + 1:
        raise UserError(f'the quality report needs at least {2 * (quality.metrics.K + 1)} real '
                        f'and {quality.metrics.K + 1} generated images: raise --num, or use '
                        f'more --data')
    report, details = quality.score(fake, real, args.seed,
                                    os.path.join(args.data_root, quality.CACHE_FOLDER), ctx,
                                    args.batch_size, args.progress, _log)
    outputs.check_replaceable(folder, quality.FILES, 'evaluate', args.overwrite)
    quality.write(folder, report, details, fake, real)
    outputs.record_written(folder, quality.FILES)
    _log(f'wrote {", ".join(os.path.join(folder, n) for n in quality.FILES)}')
    print(quality.summary_line(report))


def main(argv):
    """Score an export; prints one summary line; returns 0."""
    args = _parse(argv)
    if args.num < 2:
        raise UserError('--num must be at least 2: scores compare spreads of images')
    from ..runtime import resolve_contexts, use_np
    use_np()
    ctx = resolve_contexts(args.ctx)[0]
    from ..export.load import check_memory, load_mxnet_generator, mxnet_forward, pixels_of
    from .latent import latent_noise
    net_G, manifest = load_mxnet_generator(args.export, ctx)
    check_memory(manifest, args.num, MAX_NUM, '--num')
    # The same noise as `generate --seed`: the scored images are the ones it draws.
    fake = pixels_of(args.export, mxnet_forward(net_G, ctx), manifest,
                     latent_noise(args.num, manifest['latent_dim'], args.seed))
    if (args.features or ('inception' if args.inception_params else 'efficientnet')) == \
            'inception':
        _inception(args, net_G, manifest, ctx, fake)
    else:
        _report(args, manifest, ctx, fake)
    return 0
