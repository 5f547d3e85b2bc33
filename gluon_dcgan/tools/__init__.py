"""The commands beside training: generate, export, evaluate, ablate-activation, analyze-categories.

Each module has main(argv) and holds only its flags and steps; the library code they
call lives below them.
"""
