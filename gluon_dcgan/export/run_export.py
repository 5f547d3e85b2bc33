"""Export one run's generator: everything export/ holds, written by the two exporters."""
import os

from ..files import read_json
from .mxnet_export import export_generator
from .names import MANIFEST
from .onnx_export import onnx_writer
from .swap import MANIFEST_BYTES, heal


def export_run(net_G, cfg, folder, ctx, epochs):
    """Write `folder`: MXNet symbol + params, the verified ONNX model, manifest.json.

    `cfg` gives the shapes (latent_dim, channels, image_size); `epochs`, the epochs the
    weights were trained for, goes in the manifest, so a resume can tell a finished
    export from a stale one. Returns the manifest.
    """
    return export_generator(net_G, folder, cfg.latent_dim, cfg.channels, cfg.image_size,
                            ctx=ctx, extra_writers=[onnx_writer(cfg.latent_dim, ctx),
                                                    lambda tmp: {'epochs_trained': epochs}])


def exported_epochs(folder):
    """The epochs_trained an export's manifest records, or None (no export, or an old one).

    First puts back what a killed export left half swapped, there or in export/best/.
    """
    heal(folder)
    try:
        epochs = read_json(os.path.join(folder, MANIFEST), MANIFEST_BYTES).get('epochs_trained')
    except (OSError, ValueError, AttributeError):  # files.Damaged is a ValueError
        return None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
