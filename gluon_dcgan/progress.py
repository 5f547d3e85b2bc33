"""The one progress-bar policy: tqdm on stderr, drawn only on a terminal, gone when done.

Training's epochs, the image decode, the Inception passes and the classifier's
epochs all draw the same kind of bar, so a log file or a pipe never fills with
carriage returns and a finished bar leaves no line behind.
"""
import sys


def progress_bar(total, desc, unit, enabled=True, initial=0, bar_format=None):
    """A tqdm bar over `total` `unit`s; `enabled` False (--no-progress) draws nothing.

    disable=None lets tqdm draw only when stderr is a terminal. The bar is made at
    call time on the current sys.stderr, so make it where that is the real stderr.
    """
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                leave=False, disable=not enabled or None, dynamic_ncols=True, mininterval=0.5,
                bar_format=bar_format)
