"""Sharing one distributed KVStore between the two Trainers, and what it sends.

ps-lite allows one dist KVStore per process (a second mx.kv.create('dist_sync')
blocks), but each gluon.Trainer keys its parameters 0, 1, 2, ... so net_D's
and net_G's would collide. ``KeyOffsetKVStore`` is the same store, seen with
every key shifted by an offset; each Trainer gets one (net_D's with offset 0).
It also sends the Trainer's optimizer to the servers as data (server.py),
where MXNet's KVStore would send a pickle, which our servers refuse.
"""
from mxnet.kvstore import KVStore

from .server import send_optimizer


class KeyOffsetKVStore(KVStore):
    """`base` with keys shifted by `offset`; `base` keeps ownership of the C handle."""

    def __init__(self, base, offset):
        super().__init__(base.handle)
        self._base, self._offset = base, offset

    def __del__(self):
        pass  # the handle is freed by `base`, not by this view

    def _key(self, key):
        if isinstance(key, (list, tuple)):
            return [self._key(k) for k in key]
        return key + self._offset

    def init(self, key, value):
        return super().init(self._key(key), value)

    def push(self, key, value, priority=0):
        return super().push(self._key(key), value, priority)

    def pull(self, key, out=None, priority=0, ignore_sparse=True):
        return super().pull(self._key(key), out, priority, ignore_sparse)

    def pushpull(self, key, value, out=None, priority=0):
        return super().pushpull(self._key(key), value, out, priority)

    def broadcast(self, key, value, out, priority=0):
        return super().broadcast(self._key(key), value, out, priority)

    def set_optimizer(self, optimizer):
        send_optimizer(self, optimizer)
