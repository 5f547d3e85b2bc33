"""What MXNet's image decoder would misread, found from the file's structure before it runs.

MXNet 1.9.1's imdecode reads a PNG's size from bytes 16-23, or a JFIF JPEG's from its
frame header, without checking that the data is that long, allocates the image, and
then lets OpenCV decode into it. When OpenCV (libpng, libjpeg) rejects the header,
MXNet returns the uninitialised image without an error: often the previous image's
pixels. So a PNG's chunks are checked here as libpng checks them before its first
row, and a JPEG is handed to OpenCV in a form MXNet cannot pre-size (decode.py), so
that OpenCV's verdict is reported. Each check returns a short reason, or None.
"""
import zlib

JPEG_SOI, JPEG_EOI, JPEG_SOS = b'\xff\xd8', b'\xff\xd9', 0xDA
# Start-of-frame markers, which hold the size: C0-CF but C4 (DHT), C8 (JPG) and CC (DAC).
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_CRITICAL = frozenset({b'IHDR', b'PLTE', b'IDAT', b'IEND'})
# The bit depths each PNG colour type allows (grey, RGB, palette, grey+alpha, RGBA).
PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
PNG_MAX_SIDE = 1_000_000  # libpng's default limit on a width or a height
# A decode allocates 3 bytes a pixel before it reads a row, on every decoding thread,
# and training resizes to 64x64 anyway: 8192x8192 (192 MiB) is plenty.
MAX_PIXELS = 1 << 26


def _size_problem(width, height):
    if width == 0 or height == 0:
        return 'its header declares an empty image'
    if width * height > MAX_PIXELS:
        return (f'its header declares {width}x{height} pixels, more than 8192x8192 '
                f'(2^26): scale it down')
    return None


def _ihdr_problem(body):
    width, height = int.from_bytes(body[0:4], 'big'), int.from_bytes(body[4:8], 'big')
    depth, colour, compression, filtering, interlace = body[8:13]
    if depth not in PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        return (f'damaged PNG (an impossible header: colour type {colour}, bit depth '
                f'{depth}, methods {compression}/{filtering}/{interlace})')
    if max(width, height) > PNG_MAX_SIDE:
        return f'its header declares {width}x{height} pixels, more than libpng reads'
    return _size_problem(width, height)


def _chunk_problem(kind, body, header, kinds):
    """What libpng would refuse in this chunk, after the IHDR `header` and chunks `kinds`."""
    if header is None:
        return None if kind == b'IHDR' and len(body) == 13 else 'damaged PNG (no header first)'
    if kind == b'IHDR':
        return 'damaged PNG (two headers)'
    if kind[:1].isupper() and kind not in PNG_CRITICAL:
        return f'damaged PNG (an unknown critical chunk {kind.decode("ascii")!r})'
    colour = header[9]
    if kind == b'PLTE' and (colour in (0, 4) or b'IDAT' in kinds or not body or
                            len(body) % 3 or len(body) > 3 * 256):
        return 'damaged PNG (a palette chunk that does not fit)'
    if kind == b'IDAT' and colour == 3 and b'PLTE' not in kinds:
        return 'damaged PNG (a palette image without its palette)'
    if kind == b'IEND' and b'IDAT' not in kinds:
        return 'damaged PNG (no image data)'
    return None


def png_problem(data):
    """Why a PNG (any data starting with its first four bytes, as MXNet tests) is unfit.

    The chunks are walked to IEND: a valid header first, known critical chunks with
    intact CRCs, a palette where one is needed. An ancillary chunk with a bad CRC is
    fine: libpng drops it with a warning.
    """
    if not data.startswith(PNG_SIGNATURE[:4]):
        return None
    if not data.startswith(PNG_SIGNATURE):
        return 'damaged PNG signature'
    view, pos, header, kinds = memoryview(data), len(PNG_SIGNATURE), None, []
    while pos + 12 <= len(data):
        length, kind = int.from_bytes(view[pos:pos + 4], 'big'), bytes(view[pos + 4:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        if not kind.isalpha():
            return 'damaged PNG (a chunk with an invalid name)'
        crc = int.from_bytes(view[end - 4:end], 'big')
        if kind[:1].isupper() and zlib.crc32(view[pos + 4:end - 4]) != crc:
            return f'damaged PNG (the {kind.decode("ascii")!r} chunk fails its CRC check)'
        body = view[pos + 8:end - 4]
        problem = _chunk_problem(kind, body, header, kinds)
        if header is None and not problem:
            header = bytes(body)
            problem = _ihdr_problem(header)
        if problem or kind == b'IEND':
            return problem
        kinds.append(kind)
        pos = end
    return 'truncated PNG (no end chunk)'


def _jpeg_segments(data):
    """(marker, position, end) of each header segment of a JPEG, up to and including its
    first scan (SOS); `end` may lie past the data if it is cut. None for other data."""
    pos = 2 if data.startswith(JPEG_SOI) else len(data)
    while pos + 2 <= len(data) and data[pos] == 0xFF:
        marker, end = data[pos + 1], pos + 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
        yield marker, pos, end
        if marker == JPEG_SOS:
            return
        pos = end


def jpeg_truncated(data):
    """True if a JPEG stops before its end-of-image marker.

    OpenCV decodes such a file without complaint, filling the missing rows with grey.
    The header segments are walked to the first scan (an EXIF thumbnail inside them
    has markers of its own); within scan data a 0xFF byte is always followed by 0x00
    or a restart marker, so the first FF D9 after it is the real end. A JPEG whose
    segments cannot be walked must at least hold an FF D9 somewhere.
    """
    if not data.startswith(JPEG_SOI):
        return False
    for marker, pos, end in _jpeg_segments(data):
        if marker == JPEG_SOS and pos + 4 <= len(data):
            return data.find(JPEG_EOI, end) < 0
    return data.find(JPEG_EOI, 2) < 0


def jpeg_size_problem(data):
    """Why a JPEG's declared size (its first start-of-frame segment) is unfit, or None."""
    for marker, pos, _ in _jpeg_segments(data):
        if marker in JPEG_SOF:
            if pos + 9 > len(data):
                return 'truncated JPEG (its frame header is cut off)'
            return _size_problem(int.from_bytes(data[pos + 7:pos + 9], 'big'),
                                 int.from_bytes(data[pos + 5:pos + 7], 'big'))
    return None


def declared_size(data):
    """(width, height) a PNG's or JPEG's header declares, or None if it declares none."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b'IHDR':
        return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')
    for marker, pos, _ in _jpeg_segments(data):
        if marker in JPEG_SOF and pos + 9 <= len(data):
            return (int.from_bytes(data[pos + 7:pos + 9], 'big'),
                    int.from_bytes(data[pos + 5:pos + 7], 'big'))
    return None
