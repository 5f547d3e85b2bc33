"""Export one run's generator: everything export/ holds, written by the two exporters."""
from .mxnet_export import export_generator
from .onnx_export import onnx_writer


def export_run(net_G, cfg, folder, ctx):
    """Write `folder`: MXNet symbol + params, the verified ONNX model, manifest.json.

    `cfg` gives the shapes (latent_dim, channels, image_size); returns the manifest.
    """
    return export_generator(net_G, folder, cfg.latent_dim, cfg.channels, cfg.image_size,
                            ctx=ctx, extra_writers=[onnx_writer(cfg.latent_dim, ctx)])
