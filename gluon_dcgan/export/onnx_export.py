"""ONNX: export/generator.onnx with a dynamic batch, verified with onnxruntime before it is kept.

Uses MXNet's own exporter (mx.onnx.export_model, onnx 1.14). Two fixes to its
output: the weights are removed from the graph inputs (else onnxruntime warns
and skips constant folding), and the model is checked against the exported
MXNet graph itself (the files next to it, loaded with SymbolBlock.imports) on a
fixed latent batch; a model that differs by more than MAX_ABS_DIFF is refused.
"""
import os

import numpy as onp

from ..errors import UserError
from ..seeds import Stream, noise
from .names import ONNX, PARAMS, SYMBOL

MAX_ABS_DIFF = 1e-4
CHECK_BATCH, CHECK_SEED = 8, 1234


def _drop_initializers_from_inputs(path):
    import onnx
    model = onnx.load(path)
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def onnx_max_abs_diff(onnx_path, Z, reference):
    """Largest |onnxruntime(Z) - reference|."""
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: Z})[0]
    return float(onp.abs(got - reference).max())


def _exported_output(folder, Z, ctx):
    """The exported MXNet generator's output on Z: what the ONNX file must reproduce."""
    import warnings
    from mxnet import gluon, np
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        net = gluon.SymbolBlock.imports(os.path.join(folder, SYMBOL), ['data'],
                                        os.path.join(folder, PARAMS), ctx=ctx)
    return net(np.array(Z, ctx=ctx)).asnumpy()


def onnx_writer(latent_dim, ctx=None):
    """An export_generator writer: adds generator.onnx to the export folder, verified."""

    def write(folder):
        import mxnet as mx
        import onnx
        import onnxruntime
        path = os.path.join(folder, ONNX)
        mx.onnx.export_model(os.path.join(folder, SYMBOL),
                             os.path.join(folder, PARAMS),
                             in_shapes=[(CHECK_BATCH, latent_dim, 1, 1)], in_types=onp.float32,
                             onnx_file_path=path, dynamic=True,
                             dynamic_input_shapes=[(None, latent_dim, 1, 1)])
        _drop_initializers_from_inputs(path)
        Z = noise(CHECK_SEED, Stream.ONNX_CHECK, shape=(CHECK_BATCH, latent_dim, 1, 1))
        reference = _exported_output(folder, Z, ctx)
        diff = onnx_max_abs_diff(path, Z, reference)
        if not diff <= MAX_ABS_DIFF:
            os.remove(path)
            raise UserError(f'the ONNX generator differs from MXNet by {diff:.2e} (> '
                            f'{MAX_ABS_DIFF:g}); it was not written')
        return {'onnx': {'file': ONNX, 'input': 'data', 'dynamic_batch': True,
                         'verified_max_abs_diff': diff, 'verified_on': f'{CHECK_BATCH} latent '
                         f'vectors, seeds.noise({CHECK_SEED}, Stream.ONNX_CHECK)'},
                'onnx_versions': {'onnx': onnx.__version__,
                                  'onnxruntime': onnxruntime.__version__}}

    return write
