"""The file names of an export folder, defined once for the writers and the loaders.

HybridBlock.export(PREFIX, epoch=EPOCH) names its two files itself: SYMBOL and
PARAMS below are the names it picks.
"""
PREFIX, EPOCH = 'generator', 0
SYMBOL = f'{PREFIX}-symbol.json'         # the graph
PARAMS = f'{PREFIX}-{EPOCH:04d}.params'  # its weights, BatchNorm statistics included
ONNX = f'{PREFIX}.onnx'                  # the same generator for onnxruntime
MANIFEST = 'manifest.json'               # shapes, pixel recipe, SHA-256 of each file; last
