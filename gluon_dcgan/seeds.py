"""Every random draw, by name: one numpy Generator per (seed, stream, keys).

A stream says what the numbers are for (shuffling, a batch's noise, ...), and its
keys say which draw of that stream it is (an epoch, a batch, a worker). numpy's
SeedSequence mixes the run's seed with the spawn key (stream, *keys), one 32-bit
word per value, so two draws share numbers only if all their inputs are equal,
and a resumed run draws exactly what an uninterrupted one did.

Keys are never packed into one integer (``epoch * 1_000_003 + batch`` collides
once a batch index reaches 1_000_003), nor appended to the entropy list: there
trailing zero words vanish, so [seed, stream] and [seed, stream, 0] would give
the same numbers. In the spawn key every word counts, zeros included.
"""
import enum

import numpy as onp

SEED_LIMIT = 2 ** 32  # a seed, like every key, is one 32-bit word: [0, 2**32)


class Stream(enum.IntEnum):
    """What a draw is for. The value is the spawn key's first word: changing it
    changes every run's numbers. Each comment names the keys the stream takes."""
    SHUFFLE = 1     # (epoch,): the order of an epoch's examples, shared by all workers
    NOISE = 2       # (epoch, batch, rank): the latents Z of one training batch on one worker
    FIXED = 3       # (): the 21 latents behind every samples/epoch_NNN.png
    SAMPLES = 4     # (epoch,): fresh latents for the training figure's samples
    FID = 5         # (epoch,): the latents --fid-every scores
    ABLATION = 6    # (): the probe latents of ablate-activation
    GENERATE = 7    # (): the latents of generate, evaluate and analyze-categories
    KID = 8         # (): KID's random subsets
    CLASSIFIER = 9  # (): the batch order of analyze-categories' classifier
    SPRITES = 10    # (): the embedded synthetic sprites (--data synthetic)
    ONNX_CHECK = 11  # (): the latents an ONNX export is checked on (a fixed seed, not the run's)
    AUGMENT = 12    # (epoch, batch, rank, call): one DiffAugment draw of a batch's slice
    EVAL = 13       # (epoch,): the latents --eval-every scores (never a training stream's,
                    # so scoring leaves training's numbers as they are)
    SHARE = 14      # (): the latent directions of share's sliders


def _word(value, what):
    # bool is an int, but True as a seed is a bug, not a choice.
    if isinstance(value, bool) or not isinstance(value, (int, onp.integer)):
        raise ValueError(f'{what} must be a whole number, got {value!r}')
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f'{what} must be in [0, 2**32), got {value}')
    return int(value)


def rng(seed, stream, *keys):
    """The numpy Generator of one draw.

    `seed` is the run's seed and `keys` say which draw of `stream` (a Stream) this
    is; each is a whole number in [0, 2**32), else ValueError.
    """
    spawn_key = (int(Stream(stream)),) + tuple(_word(k, 'a key') for k in keys)
    sequence = onp.random.SeedSequence(_word(seed, 'the seed'), spawn_key=spawn_key)
    return onp.random.Generator(onp.random.PCG64(sequence))


def noise(seed, stream, *keys, shape):
    """N(0, 1) float32 latents of `shape`, drawn from rng(seed, stream, *keys)."""
    return rng(seed, stream, *keys).standard_normal(shape, dtype=onp.float32)

