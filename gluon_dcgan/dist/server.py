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
  (command 0). Each server writes or reads ``server-R.params`` (Adam's arrays,
  ``mx.nd.save``) and ``server-R.json`` (step counts) in the checkpoint folder: no
  pickle. The folder must be visible to the servers (local, or the shared --out-dir of
  several hosts).
* **No pickle on the wire.** Stock MXNet sends the optimizer as a pickle and its server
  runs ``pickle.loads`` on whatever command 0 carries: anyone who reaches a server's
  port (ps-lite has no authentication) could run code there. Here a worker describes
  its Adam as JSON (``optimizer_message``) and the server rebuilds it
  (``optimizer_from_message``), checking every field; any other message is refused
  in one line on the server's stderr and ignored. No message reaches MXNet's own
  controller.

Workers call ``save_server_states`` and ``load_server_states``. A server's keys
are slices chosen by its rank, so a checkpoint resumes only with the same
number of servers.
"""
import json
import os
import sys

PREFIX = 'gluon_dcgan-states '  # every message of ours starts so; nothing else is read
FORMAT = 1
MAX_MESSAGE = 1 << 16  # bytes: a message of ours is a few hundred
# Adam's attributes a worker's Trainer sets, with their JSON types; nothing else is sent.
ADAM_FIELDS = {'lr': float, 'wd': float, 'rescale_grad': float, 'beta1': float,
               'beta2': float, 'epsilon': float, 'clip_gradient': (float, type(None)),
               'multi_precision': bool, 'lazy_update': bool, 'allow_np_array': bool,
               'begin_num_update': int, 'num_update': int, 'aggregate_num': int,
               'lr_mult': dict, 'wd_mult': dict, 'idx2name': dict}


def _names(rank):
    return f'server-{rank}.params', f'server-{rank}.json'


def _send(kvstore, message):
    # Returns once every server has run the command (MXNet waits for their replies).
    kvstore._send_command_to_servers(0, PREFIX + json.dumps(message))


def _folder_command(kvstore, action, folder):
    _send(kvstore, {'action': action, 'folder': os.path.abspath(folder)})


def optimizer_message(optimizer):
    """An Adam optimizer as data: {'action': 'optimizer', 'name': 'adam', 'fields': ...}.

    What MXNet would pickle, less param_dict (which pickling drops too) and the step
    counts (the server keeps its own). Anything else is refused: a worker of ours only
    ever sends the Adam its Trainer built.
    """
    import mxnet as mx
    if type(optimizer) is not mx.optimizer.Adam or optimizer.lr_scheduler is not None \
            or optimizer.sym_info:
        raise ValueError(f'dist_sync sends only a plain Adam to its servers, not {optimizer!r}')
    fields = {name: getattr(optimizer, name) for name in ADAM_FIELDS}
    for name in ('lr_mult', 'wd_mult', 'idx2name'):
        fields[name] = {str(k): v for k, v in fields[name].items()}
    return {'action': 'optimizer', 'name': 'adam', 'fields': fields}


def _finite(value):
    return isinstance(value, (int, float)) and abs(value) < float('inf')  # NaN fails too


def _checked(name, value):
    kind = ADAM_FIELDS[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f'{name} is {type(value).__name__}')
    if isinstance(value, float) and not _finite(value):
        raise ValueError(f'{name} is not finite')
    if isinstance(value, int) and not 0 <= value < 2 ** 53:
        raise ValueError(f'{name} is out of range')
    if isinstance(value, dict):  # JSON keys are strings: indices come back as ints
        value = {int(k) if k.isdigit() else k: v for k, v in value.items()}
        for k, v in value.items():
            ok = (isinstance(k, int) and isinstance(v, str)) if name == 'idx2name' else \
                (_finite(v) and not isinstance(v, bool))
            if not ok:
                raise ValueError(f'{name}[{k!r}] is {v!r}')
    return value


def optimizer_from_message(message):
    """The Adam that `message` (optimizer_message's) describes, every field checked.

    Raises ValueError for anything else: another optimizer, a missing, unknown or
    ill-typed field.
    """
    import mxnet as mx
    fields = message.get('fields')
    if message.get('name') != 'adam' or not isinstance(fields, dict) or \
            set(fields) != set(ADAM_FIELDS):
        raise ValueError('not the Adam optimizer a gluon_dcgan worker sends')
    values = {name: _checked(name, fields[name]) for name in ADAM_FIELDS}
    optimizer = mx.optimizer.Adam(learning_rate=values['lr'], beta1=values['beta1'],
                                  beta2=values['beta2'], epsilon=values['epsilon'])
    for name, value in values.items():
        setattr(optimizer, name, value)
    return optimizer


def send_optimizer(kvstore, optimizer):
    """What a worker's dist kvstore does instead of set_optimizer: the optimizer as data."""
    _send(kvstore, optimizer_message(optimizer))


def parse_message(body):
    """The JSON message in a controller body of ours, or ValueError (never anything else)."""
    if not isinstance(body, str):
        body = bytes(body).decode('utf-8', 'replace')
    if len(body) > MAX_MESSAGE or not body.startswith(PREFIX):
        raise ValueError('not a gluon_dcgan message')
    try:
        message = json.loads(body[len(PREFIX):])
    except (ValueError, RecursionError):
        raise ValueError('not valid JSON') from None
    if not isinstance(message, dict) or message.get('action') not in ('save', 'load',
                                                                      'optimizer'):
        raise ValueError('no known action')
    if message['action'] != 'optimizer' and not isinstance(message.get('folder'), str):
        raise ValueError('no folder')
    return message


def save_server_states(kvstore, folder):
    """Have every server write its optimizer state into `folder`; return the file names."""
    from ..errors import UserError
    num_servers = int(os.environ['DMLC_NUM_SERVER'])
    _folder_command(kvstore, 'save', folder)
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
        _folder_command(kvstore, 'load', folder)


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
        # MXNet's own controller is never called: it unpickles command 0's body.
        def controller(cmd_id, cmd_body, handle):
            try:
                if cmd_id != 0:
                    raise ValueError(f'unknown command {cmd_id}')
                message = parse_message(cmd_body)
                optimizer = (optimizer_from_message(message)
                             if message['action'] == 'optimizer' else None)
            except ValueError as exc:
                print(f'error: parameter server {self.kvstore.rank} refused a message ({exc}); '
                      f'only gluon_dcgan workers may reach it', file=sys.stderr, flush=True)
                return
            if optimizer is None:
                self._run_command(message['action'], message['folder'])
                return
            old = self.kvstore._updater
            self.kvstore.set_optimizer(optimizer)  # on a server: a new local updater
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
