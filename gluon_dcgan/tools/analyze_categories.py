"""run.py analyze-categories: exercise 2, which Fashion-MNIST categories the GAN renders well.

A small CNN trained on the real training set labels N generated images. For each
category: the share of generated images it gets (10% each in the data), the
classifier's mean confidence on them, and its accuracy on real test images of
that category (how reliable the judge is there). RUN/categories.md and .png
replace only files it wrote before (outputs.py keeps their digests): a user's
file under one of the names is refused before any work, unless --overwrite.
"""
import os
import sys

import numpy as onp

from ..flags import OneLineParser, flag, positive_int, program, seed_int
from ..errors import UserError
from ..files import written_atomically
from .outputs import check_replaceable, record_written

REPORTS = ('categories.md', 'categories.png')
SHOWN = 8  # most confident samples per category in categories.png
RANKING = ('Ranked by the mean classifier confidence on the generated images labelled '
           'with the category (a category that gets no images ranks last); a well rendered '
           'category is one whose samples the classifier recognises confidently.')


def _table(rows, accuracy, num, path, trained_now, key):
    from ..data.fashion_mnist import CLASSES
    lines = ['# Exercise 2: Fashion-MNIST categories, best rendered first', '',
             f'{num} generated images labelled by a small CNN (test accuracy '
             f'{accuracy:.1%}; classifier {key}, {"trained now" if trained_now else "cached"}).',
             '', RANKING, '',
             '| rank | category | share of generated | (share in data) | mean confidence '
             '| classifier accuracy on real |', '|---|---|---|---|---|---|']
    for rank, r in enumerate(rows, 1):
        lines.append(f"| {rank} | {CLASSES[r['label']]} | {r['share']:.1%} | 10.0% | "
                     f"{r['confidence']:.3f} | {r['real_accuracy']:.1%} |")
    with written_atomically(path) as tmp, open(tmp, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def _figure(images, probs, preds, path):
    """One row per category: its SHOWN most confident generated samples."""
    from ..images import grid, save_png
    blank = onp.full(images.shape[1:], 255, onp.uint8)
    tiles = []
    for label in range(10):
        idx = onp.where(preds == label)[0]
        idx = idx[onp.argsort(-probs[idx, label])][:SHOWN]
        tiles += [images[i] for i in idx] + [blank] * (SHOWN - len(idx))
    save_png(grid(onp.stack(tiles), cols=SHOWN), path)


def _parse(argv):
    p = OneLineParser(prog=program('analyze-categories'), description=(
        'Exercise 2: which Fashion-MNIST categories the GAN renders well.'))
    p.add_argument('--run', required=True, metavar='DIR', help='a --data fashion-mnist run')
    p.add_argument('--num', type=positive_int, default=1000,
                   help='generated images to classify (default: %(default)s)')
    flag(p, 'classifier-epochs', type=positive_int, default=3,
         help='epochs of the judging classifier (default: %(default)s)')
    p.add_argument('--seed', type=seed_int, default=0, help='noise seed (default: %(default)s)')
    p.add_argument('--no-progress', dest='progress', action='store_false',
                   help="no progress bars for a download or the classifier's training (none "
                        "is drawn when stderr is not a terminal)")
    p.add_argument('--overwrite', action='store_true',
                   help='replace RUN/categories.md and .png even if analyze-categories did '
                        'not write them')
    return p.parse_args(argv)


def _samples(run_dir, num, seed):
    """(N, H, W, 1) uint8: the images `generate --seed` draws from the run's export."""
    from ..export.load import load_mxnet_generator, mxnet_forward
    from ..images import images_in_chunks
    from .latent import latent_noise
    net_G, manifest = load_mxnet_generator(os.path.join(run_dir, 'export'))
    return images_in_chunks(mxnet_forward(net_G), latent_noise(num, manifest['latent_dim'], seed))


def main(argv):
    """Classify a Fashion-MNIST run's samples; writes categories.md/png; returns exit code."""
    args = _parse(argv)
    from ..runtime import use_np
    use_np()
    from . import classifier
    from ..data.fashion_mnist import load_fashion_mnist
    from ..data.hub import progress_note
    from ..train import rundir
    cfg = rundir.saved_config(rundir.RunPaths(args.run))
    if cfg is None:
        raise UserError(f'{args.run} is not a run folder (no config.json)')
    if cfg.data != 'fashion-mnist':
        raise UserError(f'{args.run} was trained on {cfg.data!r}, not fashion-mnist: '
                        f'train with --data fashion-mnist --channels 1 first')
    check_replaceable(args.run, REPORTS, 'analyze-categories', args.overwrite)
    log = lambda m: print(m, file=sys.stderr)
    note = progress_note(args.progress)  # a download's line and bar, on a terminal only
    train_x, train_y = load_fashion_mnist(cfg.data_root, True, cfg.image_size, note)
    test_x, test_y = load_fashion_mnist(cfg.data_root, False, cfg.image_size, note)
    net, key, trained_now = classifier.cached_classifier(
        os.path.join(cfg.data_root, 'classifiers'), train_x, train_y, args.classifier_epochs, log,
        progress=args.progress)
    _, test_pred = classifier.predict(net, test_x)
    accuracy = float((test_pred == test_y).mean())
    print(f'classifier test accuracy: {accuracy:.1%} ({len(test_y)} images)')
    fake = _samples(args.run, args.num, args.seed)
    probs, preds = classifier.predict(net, fake)
    rows = []
    for label in range(10):
        mine = preds == label
        real = test_y == label
        rows.append({'label': label, 'share': float(mine.mean()),
                     'confidence': float(probs[mine, label].mean()) if mine.any() else 0.0,
                     'real_accuracy': float((test_pred[real] == label).mean()) if real.any()
                     else float('nan')})
    rows.sort(key=lambda r: (-r['confidence'], -r['share']))
    # Again: a file may have been put there while the classifier trained.
    check_replaceable(args.run, REPORTS, 'analyze-categories', args.overwrite)
    _table(rows, accuracy, args.num, os.path.join(args.run, 'categories.md'), trained_now, key)
    _figure(fake, probs, preds, os.path.join(args.run, 'categories.png'))
    record_written(args.run, REPORTS)
    print(open(os.path.join(args.run, 'categories.md')).read())
    return 0
