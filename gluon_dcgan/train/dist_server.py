"""The scheduler and parameter servers of a dist_sync run, and their Adam state in checkpoints.

``gluon_dcgan.launch`` runs this file by its path with DMLC_ROLE=scheduler or
server. The scheduler is MXNet's own (it runs inside ``import mxnet``). A server
is MXNet's ``KVStoreServer`` extended in two ways:

* **State survives a new optimizer.** Every Trainer on every worker sends its
  optimizer when it first steps, and MXNet's server replaces its updater, with
  the Adam moments and step counts of every key, each time. net_G's Trainer first
  steps after net_D's first update, so plain MXNet restarts net_D's Adam state
  after batch 1 of every run. This server keeps the states and counts.
* **save / load commands.** Rank 0 sends them through MXNet's controller channel
  (command 0, whose body is otherwise a pickled optimizer sent by a worker). Each
  server writes or reads ``server-R.params`` (Adam's arrays, ``mx.nd.save``) and
  ``server-R.json`` (step counts) in the checkpoint folder: no pickle. The folder
  must be visible to the servers (local, or the shared --out-dir of several hosts).

Workers call ``save_server_states`` and ``load_server_states``. A server's keys
are slices chosen by its rank, so a checkpoint resumes only with the same
number of servers.
"""
import json
import os
import sys

PREFIX = b'gluon_dcgan-states '  # a pickled optimizer (protocol 0) never starts like this
FORMAT = 1


def _names(rank):
    return f'server-{rank}.params', f'server-{rank}.json'


def _send(kvstore, action, folder):
    body = PREFIX + json.dumps({'action': action, 'folder': os.path.abspath(folder)}).encode()
    # Returns once every server has run the command (MXNet waits for their replies).
    kvstore._send_command_to_servers(0, body.decode())


def save_server_states(kvstore, folder):
    """Have every server write its optimizer state into `folder`; return the file names."""
    from ..errors import UserError
    num_servers = int(os.environ['DMLC_NUM_SERVER'])
    _send(kvstore, 'save', folder)
    names = [n for r in range(num_servers) for n in _names(r)]
    missing = [n for n in names if not os.path.exists(os.path.join(folder, n))]
    if missing:  # a server could not write (its error is in its log) or sees another disk
        raise UserError(f'the parameter servers did not write {", ".join(missing)} in {folder}; '
                        f'on several hosts, --out-dir must be on a disk they all share')
    return names


def load_server_states(kvstore, folder):
    """Have every server read its optimizer state back from `folder` (see save_server_states)."""
    from ..errors import UserError
    num_servers = int(os.environ['DMLC_NUM_SERVER'])
    saved = sorted(n for n in os.listdir(folder) if n.startswith('server-') and
                   n.endswith('.json'))
    if len(saved) != num_servers:
        raise UserError(f'{folder} holds the Adam state of {len(saved)} parameter server(s); '
                        f'resume with --servers {len(saved)}')
    if kvstore.rank == 0:  # once is enough: every server has loaded before its first update
        _send(kvstore, 'load', folder)


def write_states(updater, folder, rank):
    """Write one server's updater (Adam moments and step counts) as arrays + JSON."""
    import mxnet as mx
    arrays, layout = {}, {}
    for key, state in updater.states.items():
        parts = state if isinstance(state, (tuple, list)) else (state,)
        if not all(isinstance(p, mx.nd.NDArray) for p in parts):
            raise TypeError(f'optimizer state of key {key} is not a tuple of arrays')
        layout[str(key)] = len(parts)
        for i, part in enumerate(parts):
            arrays[f'{key}:{i}'] = part
    opt = updater.optimizer
    counts = {str(d): {str(k): v for k, v in c.items()}
              for d, c in opt._all_index_update_counts.items()}
    params, meta = (os.path.join(folder, n) for n in _names(rank))
    mx.nd.save(params, arrays)
    # The .json appears last: it says the rank is done. Renamed by hand, not with
    # files.written_atomically: a server runs this file by its path (launch.SERVER), as a
    # script outside the package, where the package's relative imports do not work.
    with open(meta + '.tmp', 'w') as f:
        json.dump({'format': FORMAT, 'optimizer': type(opt).__name__, 'layout': layout,
                   'num_update': opt.num_update, 'update_counts': counts}, f)
    os.replace(meta + '.tmp', meta)


def read_states(folder, rank):
    """(states, counts, num_update) written by ``write_states`` for this rank."""
    import mxnet as mx
    params, meta = (os.path.join(folder, n) for n in _names(rank))
    with open(meta) as f:
        info = json.load(f)
    arrays = mx.nd.load(params)
    states = {int(k): tuple(arrays[f'{k}:{i}'] for i in range(n))
              for k, n in info['layout'].items()}
    counts = {int(d): {int(k): int(v) for k, v in c.items()}
              for d, c in info['update_counts'].items()}
    return states, counts, int(info['num_update'])


class StatefulServerMixin:
    """Mixed into MXNet's KVStoreServer by ``serve`` (MXNet can only be imported there)."""

    pending = None  # (states, counts, num_update) loaded before the first optimizer arrived

    def _controller(self):
        mxnet_controller = super()._controller()

        def controller(cmd_id, cmd_body, handle):
            if cmd_id == 0 and cmd_body.startswith(PREFIX):
                command = json.loads(cmd_body[len(PREFIX):])
                self._run_command(command['action'], command['folder'])
                return
            old = self.kvstore._updater
            mxnet_controller(cmd_id, cmd_body, handle)  # a worker's optimizer: a new updater
            self._carry_over(old)
        return controller

    def _run_command(self, action, folder):
        try:
            if action == 'save':
                write_states(self._updater_or_empty(), folder, self.kvstore.rank)
            else:
                self.pending = read_states(folder, self.kvstore.rank)
                if self.kvstore._updater is not None:
                    self._install()
        except Exception as exc:  # a server that cannot load must not train on zeros
            print(f'error: parameter server {self.kvstore.rank} could not {action} its Adam '
                  f'state in {folder}: {exc}', file=sys.stderr, flush=True)
            if action == 'load':
                os._exit(2)

    def _updater_or_empty(self):
        if self.kvstore._updater is not None:
            return self.kvstore._updater
        import mxnet as mx
        return mx.optimizer.get_updater(mx.optimizer.Adam())  # no step taken yet: no state

    def _carry_over(self, old):
        new = self.kvstore._updater
        if old is not None and new is not old:
            new.states, new.states_synced = old.states, old.states_synced
            _set_counts(new.optimizer, old.optimizer._all_index_update_counts,
                        old.optimizer.num_update)
        if self.pending is not None:
            self._install()

    def _install(self):
        states, counts, num_update = self.pending
        updater = self.kvstore._updater
        updater.states = dict(states)
        updater.states_synced = dict.fromkeys(states, True)
        _set_counts(updater.optimizer, counts, num_update)
        self.pending = None


def _set_counts(optimizer, counts, num_update):
    optimizer._all_index_update_counts = counts
    optimizer._index_update_count = counts.setdefault(0, {})  # the server's cpu(0)
    optimizer.num_update = num_update


def serve():
    """Run this process as the scheduler or a server, as DMLC_ROLE says; returns when done."""
    if os.environ.get('DMLC_ROLE') != 'server':
        import mxnet  # noqa: F401  the scheduler runs inside MXNet's import and exits there
        return
    del os.environ['DMLC_ROLE']  # with it, `import mxnet` would run MXNet's own server
    import mxnet as mx
    from mxnet.kvstore.kvstore_server import KVStoreServer
    os.environ['DMLC_ROLE'] = 'server'
    server_class = type('StatefulServer', (StatefulServerMixin, KVStoreServer), {})
    server_class(mx.kv.create('dist')).run()


if __name__ == '__main__':
    serve()
