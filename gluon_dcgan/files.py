"""Small file helpers shared by data, checkpoints and exports (no MXNet import)."""
import hashlib


def file_digest(path, algorithm='sha256'):
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()
