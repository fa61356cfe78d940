"""Child process of a layer unpack: inflates gzip from stdin to stdout, reports sha256 on stderr.

unpackstream.ChildInflater runs this file with ``python3 -I -S`` so that inflating and
hashing (about half the work of an unpack) run on a second CPU while the parent parses the
tar and writes files, as ``tar -xzf`` does with its gzip child. On success the last thing
written to stderr is ``ok <sha256 hex> <bytes>``; on a corrupt stream it is
``error <message>`` and the exit status is 1.
"""

import hashlib
import os
import sys


def main():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    from edgert.image.unpacklimits import LayerError
    from edgert.image.unpackstream import gunzip_chunks

    digest = hashlib.sha256()
    total = 0
    try:
        for chunk in gunzip_chunks(lambda size: os.read(0, size)):
            digest.update(chunk)
            total += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(1, view):]
    except LayerError as e:
        os.write(2, b"error " + str(e).encode())
        return 1
    except BrokenPipeError:
        return 1  # the parent stopped reading (an error or limit on its side)
    os.close(1)
    os.write(2, b"ok %s %d" % (digest.hexdigest().encode(), total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
