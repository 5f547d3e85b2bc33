"""Start a dist_sync training: scheduler, servers and workers on MXNet's ps-lite KVStore.

    gluon-dcgan launch --workers 2 --servers 1 -- gluon-dcgan train --kvstore dist_sync ...

(also ``python -m gluon_dcgan.launch``, and ``python run.py train`` as the command in a
checkout). This docstring is for the code's readers; users read docs/distributed.md,
which --help points to.

Processes run on this machine by default, pinned to loopback (DMLC_NODE_HOST=127.0.0.1,
DMLC_INTERFACE=lo, unless either is already set), so a machine without a network card
trains too. With --hostfile they run over ssh on the hosts listed, one
``[user@]host[:port]`` per line (the first also runs the scheduler); each host's
DMLC_NODE_HOST is its address as ssh resolves it (``ssh -G``), and the scheduler port
is asked of the first host unless --port is given. ssh runs with the user's own
configuration (or ``-F FILE`` from --ssh-config), host-key checking included, in batch
mode: the launcher cannot answer prompts. Each remote command first changes to the
current folder, which must exist at the same path on every host.

No orphans. Every process runs under ``guard.py`` (same folder), whose stdin is
a pipe from the launcher (through ssh for a remote one). The launcher writes ``stop``
(SIGTERM, then SIGKILL after a grace period) or ``kill`` (SIGKILL now) to the guards it
stops; if the launcher, its ssh connection or the host dies, the kernel or sshd closes
the pipe and the guard stops its command's process group all the same. The command
dies with its guard (PR_SET_PDEATHSIG). Why this way: ``ssh -tt`` (SIGHUP through a
pseudo-terminal) would merge stdout and stderr, add carriage returns, reach only the
terminal's foreground group and rely on the program not catching SIGHUP; recording
remote PIDs to kill them later needs a second connection, which fails exactly when a
host or the network does, and never covers the launcher's own death. The pipe needs
neither: its end-of-file is delivered by the kernel however the other side ends.

Stopping: when any process fails, on SIGINT (Ctrl-C) and on SIGTERM, every process on
every host is stopped and the launcher exits with the failed process's code (130/143
for a signal). A worker that prints the command line's ``error: ...`` line is the
cause of what follows (a chief that finds its run folder locked makes a server abort a
moment later): its line and exit code are reported, the others' dying output muted. Output lines carry a label: ``[worker #i@host]`` until the worker reports
the rank ps-lite gave it (``worker R/N`` in its log), then ``[worker R]``.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from .. import signals
from ..errors import UserError
from ..flags import OneLineParser, flag
from .ssh import forwarded_environment, read_hosts, remote_command, remote_free_port

HERE = os.path.dirname(os.path.abspath(__file__))
GUARD = os.path.join(HERE, 'guard.py')
SERVER = os.path.join(HERE, 'server.py')
GRACE = 10.0  # seconds a stopped process has to finish its batch and checkpoint
RANK_LINE = re.compile(r'^worker (\d+)/\d+\b')  # what fit logs once ps-lite gave a rank
STOPPED_LINE = re.compile(r'^(interrupted|terminated)\b')  # fit/cli: saved, or nothing to save
ERROR_LINE = re.compile(r'^error: ')  # the CLI's one-line error: that worker is ending
CAUSE_WAIT = 5.0  # seconds a worker that printed its error has to exit with its own code
# The exit code of a worker that printed its error line but hung on its way out (in
# ps-lite's exit barrier, which waits for every node): the code of a user error.
USER_ERROR = 2
MAX_LINE = 1 << 16  # characters: a longer output line is passed on in pieces


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Process:
    """One launched process: its label, its Popen, and the pipe that keeps it alive."""

    def __init__(self, label, role, popen):
        self.label, self.role, self.popen = label, role, popen
        self.stopped = threading.Event()  # it said it stopped (and saved what it had to)
        self.muted = False  # after another process failed: its dying words are noise
        self.last_line = self.error_line = ''

    def _look_at(self, line, on_error):
        m = RANK_LINE.match(line)
        if m and self.label.startswith('worker #'):
            old, self.label = self.label, f'worker {m[1]}'
            if not self.muted:
                print(f'launch: {old} has rank {m[1]}', file=sys.stderr, flush=True)
        if STOPPED_LINE.match(line):
            self.stopped.set()
        if ERROR_LINE.match(line) and on_error:
            self.error_line = line.strip()
            on_error(self)  # before the next line of anyone: what follows is its effect
        if line.strip() and not self.muted:
            self.last_line = line.strip()

    def forward(self, stream, out, on_error=None):
        """Copy `stream` to `out`, each line labelled; at most MAX_LINE characters at once."""
        at_start = True
        for piece in iter(lambda: stream.readline(MAX_LINE), ''):
            if at_start:
                self._look_at(piece, on_error)
            if not self.muted:
                out.write(f'[{self.label}] {piece}' if at_start else piece)
                out.flush()
            at_start = piece.endswith('\n')
        if not at_start and not self.muted:
            out.write('\n')  # its last line had no end: the next label starts a line
        stream.close()

    def release(self, at_once):
        """Tell the guard to stop its command: at once (SIGKILL), or gracefully (SIGTERM)."""
        try:
            self.popen.stdin.write('kill\n' if at_once else 'stop\n')
            self.popen.stdin.flush()
            if at_once:
                self.popen.stdin.close()
        except (OSError, ValueError):
            pass  # the guard is gone, or was told already


class Cluster:
    """The launched processes, each under a guard, and how to stop them all."""

    def __init__(self, base_env, hosts, exports=None):
        self.base_env, self.hosts, self.procs = base_env, hosts, []
        self.exports = exports or {}  # what ssh mode forwards (forwarded_environment)
        self.cause = None  # the first worker that printed the CLI's error line
        self._cause_lock = threading.Lock()

    def _worker_error(self, proc):
        with self._cause_lock:
            if self.cause is None:
                self.cause = proc
                self._mute_all_but(proc)

    def _mute_all_but(self, proc):
        for other in self.procs:  # what the others print as they die is not the cause
            other.muted = other is not proc

    def start(self, label, command, role, index):
        """Start `command` as the index-th process of `role` (round robin over the hosts)."""
        env = dict(self.base_env, DMLC_ROLE=role)
        guarded = [sys.executable, GUARD, str(GRACE), '--'] + command
        if self.hosts:
            host = self.hosts[index % len(self.hosts)]
            label = f'{label}@{host.name}' if role == 'worker' else label
            if 'DMLC_INTERFACE' not in os.environ:  # the user's choice of card wins
                env['DMLC_NODE_HOST'] = host.address
            remote = remote_command(current_folder(), dict(self.exports, **env), guarded)
            cmd, full_env = host.run(remote), None
        else:
            cmd, full_env = guarded, dict(os.environ, **env)
        popen = subprocess.Popen(cmd, env=full_env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 errors='replace',  # a stray byte must not stop the copying
                                 start_new_session=True)  # Ctrl-C reaches the launcher only
        proc = Process(label, role, popen)
        self.procs.append(proc)
        on_error = self._worker_error if role == 'worker' else None
        for stream, out in ((popen.stdout, sys.stdout), (popen.stderr, sys.stderr)):
            threading.Thread(target=proc.forward, args=(stream, out, on_error),
                             daemon=True).start()

    def stop_all(self, at_once=False):
        """Stop every process, on every host; returns once all are gone.

        After a failure the others cannot progress (dist_sync waits for every worker), so
        all are killed at once. After a signal, the chief (rank 0) alone gets SIGTERM, so
        the others keep stepping and its batch can end; it has up to GRACE seconds to
        save a checkpoint, for which it needs the servers, and say so ("interrupted ...").
        Then whatever is left is killed. A guard that does not exit is killed
        too, with its ssh connection (the remote guard then sees end-of-file)."""
        signals.ignore()  # a second signal must not cut this short
        if not at_once:
            workers = [p for p in self.procs if p.role == 'worker']
            chief = [p for p in workers if p.label == 'worker 0'] or workers
            for proc in chief:  # the others keep stepping, so the chief's last batch ends
                proc.release(at_once=False)
            deadline = time.time() + GRACE + 3.0  # its exit may then wait for the others
            while time.time() < deadline and not all(
                    p.stopped.is_set() or p.popen.poll() is not None for p in chief):
                time.sleep(0.1)
        for proc in self.procs:
            proc.release(at_once=True)
        for proc in _wait(self.procs, 3.0):
            os.killpg(proc.popen.pid, signal.SIGKILL)  # the guard's command dies with it
            proc.popen.wait()

    def supervise(self, poll=0.2):
        """Wait for the workers; the first failure stops everything. Returns the exit code.

        A worker that prints the CLI's error line (its run folder is locked, say) is the
        cause, whatever fails next: the chief's refusal lets the other workers push to
        keys it never initialised, and a server aborts with a C++ dump, which is muted.
        """
        workers = [p for p in self.procs if p.role == 'worker']
        others = [p for p in self.procs if p.role != 'worker']
        while not all(p.popen.poll() == 0 for p in workers):
            failed = self.cause or next(
                (p for p in workers + others if p.popen.poll() not in (None, 0)), None)
            if failed:
                return self._failed(failed)
            time.sleep(poll)
        _wait(self.procs, 10.0)  # the scheduler and servers end once the workers leave
        self.stop_all(at_once=True)
        return 0

    def _failed(self, proc):
        """Report the failure's cause in one line, stop every process; the exit code."""
        if proc.role != 'worker':  # a worker's error line may still be on its way
            deadline = time.time() + 2.0
            while self.cause is None and time.time() < deadline:
                time.sleep(0.05)
        proc = self.cause or proc
        self._mute_all_but(proc)
        code, line = proc.popen.poll(), proc.error_line or proc.last_line
        if proc is self.cause:  # it is ending: let its own exit code through
            code = None if _wait([proc], CAUSE_WAIT) else proc.popen.poll()
        reason = f': {line[:300]}' if line else ''
        said = 'failed' if code is None else f'exited with {code}'
        print(f'launch: {proc.label} {said}{reason}; stopping the others',
              file=sys.stderr, flush=True)
        self.stop_all(at_once=True)
        if not code:  # it hung on its way out (ps-lite's exit barrier), or said 0
            return USER_ERROR
        return code if code > 0 else 128 - code


def current_folder():
    """os.getcwd(), or a one-line UserError if the folder was deleted under the shell."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise UserError('the current folder was deleted: cd to an existing folder, then run '
                        'again') from None


def _wait(procs, seconds):
    """Wait up to `seconds` for `procs` to exit; returns those still running."""
    deadline = time.time() + seconds
    for proc in procs:
        try:
            proc.popen.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
    return [p for p in procs if p.popen.poll() is None]


MODULE = 'python -m gluon_dcgan'  # how a worker command runs the package wherever it is


class _Parser(OneLineParser):
    def error(self, message):  # one line, exit 2, raised to main like every other user error
        raise UserError(f'{message} (see {self.prog} --help)')


def train_command(cli=None):
    """The training command to put after --, for a user who typed `cli` (None: the module)."""
    return f'{"python " if cli == "run.py" else ""}{cli or MODULE} train --kvstore dist_sync'


def parse_args(argv, cli=None):
    """(launcher options, training command); every check runs before anything starts.

    `cli`: what the user typed to reach `launch` (run.py, gluon-dcgan, python -m
    gluon_dcgan), or None for python -m gluon_dcgan.launch."""
    split = argv.index('--') if '--' in argv else len(argv)
    example = train_command(cli)
    p = _Parser(prog=f'{cli} launch' if cli else f'{MODULE}.launch',
                usage='%(prog)s --workers N [flags] -- COMMAND ...',
                description='Run a --kvstore dist_sync training on MXNet\'s parameter servers: '
                            'a scheduler, servers and N workers, each running COMMAND, on '
                            'this machine or over ssh; all are stopped if one fails.',
                epilog=f'COMMAND is the training, e.g. {example} --out-dir runs/d. '
                       f'Hostfiles, ssh, labels, stopping and resuming: docs/distributed.md '
                       f'in the source.')
    p.add_argument('--workers', type=int, required=True, metavar='N', help='worker processes')
    p.add_argument('--servers', type=int, default=1, metavar='M',
                   help='parameter servers (default: 1)')
    p.add_argument('--hostfile', metavar='FILE', help='hosts to ssh into, one '
                   '[user@]host[:port] per line (default: this machine, over loopback)')
    p.add_argument('--port', type=int, help='scheduler port (default: a free one on the '
                   "scheduler's host)")
    flag(p, 'ssh-config', metavar='FILE', help='ssh configuration file, passed to ssh as -F '
         '(default: $GLUON_DCGAN_SSH_CONFIG, else ssh\'s own)')
    args = p.parse_args(argv[:split])
    command = argv[split + 1:]
    if split == len(argv) or not command:
        raise UserError(f'put the training command after --, e.g. -- {example} ...')
    if args.workers < 1 or args.servers < 1:
        raise UserError(f'--workers and --servers must be at least 1 '
                        f'(got {args.workers} and {args.servers})')
    if args.port is not None and not 0 < args.port < 65536:
        raise UserError(f'--port must be between 1 and 65535 (got {args.port})')
    args.ssh_config = args.ssh_config or os.environ.get('GLUON_DCGAN_SSH_CONFIG')
    if args.ssh_config and not os.path.isfile(args.ssh_config):
        raise UserError(f'--ssh-config {args.ssh_config!r} is not a file')
    return args, _same_install(command)


def _same_install(command):
    """`python` and `gluon-dcgan` as the launcher's own: this venv's, even if not on PATH."""
    if command[0] in ('python', 'python3'):
        return [sys.executable] + command[1:]
    script = os.path.join(os.path.dirname(sys.executable), 'gluon-dcgan')
    if command[0] == 'gluon-dcgan' and os.path.isfile(script):
        return [script] + command[1:]
    return command


def _cluster_env(args, hosts):
    """The DMLC variables every process shares (the role and node address come later)."""
    env = {'DMLC_NUM_SERVER': str(args.servers), 'DMLC_NUM_WORKER': str(args.workers)}
    if hosts:
        env['DMLC_PS_ROOT_URI'] = hosts[0].address
        env['DMLC_PS_ROOT_PORT'] = str(args.port or remote_free_port(hosts[0]))
    else:
        env['DMLC_PS_ROOT_URI'] = '127.0.0.1'
        env['DMLC_PS_ROOT_PORT'] = str(args.port or _free_port())
        if not {'DMLC_INTERFACE', 'DMLC_NODE_HOST'} & set(os.environ):
            # ps-lite would bind the first non-loopback card, or fail if there is none.
            env.update(DMLC_INTERFACE='lo', DMLC_NODE_HOST='127.0.0.1')
    return env


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signum)


def run(args, command):
    """Start every role, supervise them; returns the exit code."""
    current_folder()  # every process starts there: refuse a deleted one now
    hosts = None
    if args.hostfile:
        if shutil.which('ssh') is None:
            raise UserError('--hostfile needs ssh on PATH (install openssh-client)')
        ssh = ['ssh'] + (['-F', args.ssh_config] if args.ssh_config else []) + \
            ['-T', '-o', 'BatchMode=yes']  # no pseudo-terminal; never wait for a password
        hosts = read_hosts(args.hostfile, ssh)
    exports = forwarded_environment() if hosts else None  # its notes, once per run
    cluster = Cluster(_cluster_env(args, hosts), hosts, exports)
    env = cluster.base_env
    print(f"launch: scheduler at {env['DMLC_PS_ROOT_URI']}:{env['DMLC_PS_ROOT_PORT']}, "
          f'{args.servers} server(s), {args.workers} worker(s)', file=sys.stderr, flush=True)
    # Stopping the launcher stops its processes. SIGINT is set explicitly: a launcher
    # started in the background by a script inherits SIGINT ignored, and Ctrl-C or
    # kill -INT must still stop the run.
    signals.install(_interrupt)
    server = [sys.executable, SERVER]
    try:
        cluster.start('scheduler', server, 'scheduler', 0)
        for i in range(args.servers):
            cluster.start(f'server #{i}', server, 'server', i)
        for i in range(args.workers):
            cluster.start(f'worker #{i}', command, 'worker', i)
        return cluster.supervise()
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args else signal.SIGINT
        print(f'launch: got signal {signum}; stopping every process', file=sys.stderr, flush=True)
        cluster.stop_all()
        return 128 + signum


def main(argv=None, cli=None):
    """The command line: parse, check, run; returns the exit code (see parse_args for cli)."""
    try:
        args, command = parse_args(sys.argv[1:] if argv is None else list(argv), cli)
        return run(args, command)
    except UserError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before any process was started
        return 130


if __name__ == '__main__':
    sys.exit(main())
