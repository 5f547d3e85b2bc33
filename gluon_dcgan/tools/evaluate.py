"""run.py evaluate: FID between an exported generator's images and real images."""
import os
import sys

from ..config import Config, OneLineParser, add_data_flags
from ..errors import UserError


def main(argv):
    """Score an export; prints 'FID X (N generated, M real images)'; returns the exit code."""
    from ..config import _positive_int, seed_int
    defaults = Config(data='pokemon')
    p = OneLineParser(prog='run.py evaluate', description=(
        'Fréchet Inception Distance (InceptionV3 pool features, 299x299) between images '
        'from an export and real images.'))
    p.add_argument('--export', required=True, metavar='DIR', help="a run's export/ folder")
    p.add_argument('--num', type=_positive_int, default=5000,
                   help='images per side (default: %(default)s; fewer real ones if the data '
                        'is smaller)')
    p.add_argument('--seed', type=seed_int, default=0, help='noise seed (default: %(default)s)')
    p.add_argument('--inception-params', metavar='FILE',
                   help='InceptionV3 weights from save_parameters (default: pretrained, '
                        'downloaded once into DATA_ROOT/models)')
    p.add_argument('--batch-size', type=_positive_int, default=32,
                   help='images per Inception pass (default: %(default)s)')
    add_data_flags(p, defaults)
    args = p.parse_args(argv)
    from ..runtime import use_np
    use_np()
    import mxnet as mx
    from .. import fid, generate
    from ..data import load_images
    net_G, manifest = generate.load_mxnet_generator(args.export, mx.cpu())
    channels = manifest['output_shape'][1]
    cfg = Config(data=args.data, data_root=args.data_root, limit=args.limit, batch_size=1,
                 num_workers=args.num_workers, skip_bad_images=args.skip_bad_images,
                 channels=channels)
    if cfg.data not in ('pokemon', 'synthetic', 'fashion-mnist') and not os.path.isdir(cfg.data):
        raise UserError(f'--data {cfg.data!r} does not exist: give pokemon, synthetic, '
                        f'fashion-mnist or a folder of images')
    net = fid.load_inception(args.inception_params, os.path.join(args.data_root, 'models'))
    real = load_images(cfg, log=lambda m: print(m, file=sys.stderr))[:args.num]
    # The same noise as `generate --seed`: the scored images are the ones it draws.
    fake = generate.pixels_in_chunks(
        net_G, generate.latent_noise(args.num, manifest['latent_dim'], args.seed))
    real_stats = fid.statistics(fid.inception_features(net, real, batch_size=args.batch_size))
    score = fid.fid_of_images(net, fake, real_stats)
    print(f'FID {score:.6g} ({len(fake)} generated, {len(real)} real images)')
    return 0
