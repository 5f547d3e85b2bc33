"""The ssh side of gluon_dcgan.launch: hostfile lines, what ssh makes of them, a remote port,
and the shell command each remote process is started with.

A hostfile line is ``[user@]host[:port]``; ``host`` may be an alias of the user's ssh
configuration. ``ssh -G`` (which does not connect) gives the address ps-lite binds on
that host and whether keep-alives are configured.

What reaches a shell. ssh hands its command to the remote user's login shell, which
must be a POSIX one (sh, bash, dash, zsh). Everything in that command is quoted
(``shlex.quote``): the folder, every value, the program and each argument; variable
names are not quotable, so only shell identifiers are forwarded. A hostfile's user and
host names are letters, digits and ``._-``, never starting with ``-``: ssh would read
``-oProxyCommand=...`` as an option, and ssh configurations expand user and host names
into commands (``%r``, ``%h`` in ProxyCommand or Match exec). Nothing read from ssh is
unbounded: MAX_OUTPUT bytes are kept of each of its streams, the rest is discarded.
"""
import os
import re
import shlex
import socket
import subprocess
import sys
import threading

from ..errors import UserError, last_line
from ..files import Damaged, read_bounded

MAX_HOSTFILE = 1 << 20  # a hostfile is a few lines: 1 MiB is far more than any
MAX_OUTPUT = 1 << 16  # bytes kept of what `ssh -G` or the port probe prints (a few KiB)
SSH_TIMEOUT = 60  # seconds for `ssh -G` or the port probe to answer

NAME = r'[A-Za-z0-9_][A-Za-z0-9._-]*'  # a user or host name: no option, no shell syntax
HOST_LINE = re.compile(rf'^(?:(?P<user>{NAME})@)?(?P<host>{NAME})(?::(?P<port>\d{{1,5}}))?$')
FORWARDED = ('DMLC_', 'PS_', 'MXNET_', 'OMP_NUM_THREADS', 'GLUON_DCGAN_')
# A name a remote shell reads as a variable assignment, and nothing else: any other
# name (`X$(cmd)`) would be run by the remote shell, so it is never forwarded.
SHELL_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
PORT_CODE = 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'


class Host:
    """One hostfile line: where ssh goes, and the address ps-lite binds there."""

    def __init__(self, m, ssh):
        self.name = m['host']
        target = (['-l', m['user']] if m['user'] else []) + \
            (['-p', m['port']] if m['port'] else []) + [self.name]
        # ssh -G prints the configuration ssh would use (aliases resolved), offline.
        code, out, err = run_bounded([ssh[0], '-G'] + ssh[1:] + target, f'ssh -G {self.name}')
        config = dict(l.split(None, 1) for l in out.splitlines() if ' ' in l)
        if code or 'hostname' not in config:
            raise UserError(f'ssh -G {self.name} failed: {last_line(err, empty="no message")}')
        try:
            self.address = socket.getaddrinfo(config['hostname'], None, socket.AF_INET)[0][4][0]
        except socket.gaierror:
            raise UserError(f"--hostfile: cannot resolve {config['hostname']!r} "
                            f'(host {self.name})') from None
        # Without keep-alives a dead host is noticed only when TCP gives up (hours).
        alive = [] if config.get('serveraliveinterval', '0') != '0' else \
            ['-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=3']
        self.ssh = ssh + alive + target

    def run(self, command):
        """The ssh command line that runs `command` (a shell string) on this host."""
        return self.ssh + [command]


def read_hosts(path, ssh):
    """The hosts of a hostfile; every line is checked before any is looked up."""
    try:
        text = read_bounded(path, MAX_HOSTFILE).decode('utf-8')
    except OSError as exc:
        raise UserError(f'cannot read --hostfile {path!r} ({exc.strerror})') from None
    except (Damaged, UnicodeDecodeError) as exc:
        why = 'not UTF-8 text' if isinstance(exc, UnicodeDecodeError) else \
            str(exc).replace(path, 'it')
        raise UserError(f'cannot read --hostfile {path!r} ({why}): give a text file of '
                        f'[user@]host[:port] lines') from None
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith('#')]
    if not lines:
        raise UserError(f'--hostfile {path!r} lists no hosts')
    matches = [HOST_LINE.match(line) for line in lines]
    for line, m in zip(lines, matches):  # every line is checked before any is resolved
        if not m or (m['port'] and not 0 < int(m['port']) < 65536):
            raise UserError(f'--hostfile: {line!r} is not [user@]host[:port]')
    return [Host(m, ssh) for m in matches]


def remote_free_port(host):
    """A port free on the scheduler's host, asked over ssh (the scheduler binds it there)."""
    probe = f'{shlex.quote(sys.executable)} -c {shlex.quote(PORT_CODE)}'
    code, out, err = run_bounded(host.run(probe), f'ssh {host.name}', '; or give --port')
    if code or not out.strip().isdigit():
        raise UserError(f'cannot choose the scheduler port on {host.name} over ssh '
                        f'({last_line(err, empty="no message")}); check ssh, or give --port')
    return int(out.strip())


def _drain(stream, kept, keep_tail):
    """Read `stream` to its end in chunks, keeping MAX_OUTPUT bytes: its head, or its tail."""
    for chunk in iter(lambda: stream.read(MAX_OUTPUT), b''):
        kept[:] = (kept + chunk)[-MAX_OUTPUT:] if keep_tail else (kept + chunk)[:MAX_OUTPUT]
    stream.close()


def run_bounded(cmd, what, hint=''):
    """(exit code, stdout's head, stderr's tail) of `cmd`, at most MAX_OUTPUT bytes each.

    A command that does not end within SSH_TIMEOUT seconds is killed: a one-line
    UserError naming `what`, followed by `hint`.
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = bytearray(), bytearray()
    readers = [threading.Thread(target=_drain, args=args, daemon=True)
               for args in ((proc.stdout, out, False), (proc.stderr, err, True))]
    for reader in readers:
        reader.start()
    try:
        code = proc.wait(SSH_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise UserError(f'{what} did not answer in {SSH_TIMEOUT} s: check ssh{hint}') from None
    for reader in readers:
        reader.join(SSH_TIMEOUT)  # a child of ssh may hold the pipes open: do not wait forever
    return (code, out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace'))


def remote_command(folder, exports, command):
    """The shell command that runs `command` in `folder` with the variables `exports`.

    Every word is quoted; a name that is not a shell identifier is refused here (the
    caller forwards none, see forwarded_environment), so no part is ever run as code.
    """
    bad = [name for name in exports if not SHELL_NAME.match(name)]
    if bad:
        raise ValueError(f'not shell variable names: {bad!r}')
    assignments = ' '.join(f'{k}={shlex.quote(v)}' for k, v in sorted(exports.items()))
    return f'cd {shlex.quote(folder)} && exec env {assignments} {shlex.join(command)}'


def forwarded_environment():
    """The variables a remote process gets from this one: FORWARDED prefixes, valid names.

    A name that is not a shell identifier is skipped with a note: in `env NAME=value`
    on the remote shell it would be run, not assigned. Skipped rather than refused:
    these variables are passed on without the user asking, MXNet and ps-lite read
    identifiers only (such a name means nothing to them), and a stray variable in the
    environment should not stop a run.
    """
    exports = {}
    for name, value in os.environ.items():
        if not name.startswith(FORWARDED):
            continue
        if SHELL_NAME.match(name):
            exports[name] = value
        else:
            print(f'launch: note: not forwarding the variable {name!r}: not a valid shell '
                  f'name', file=sys.stderr, flush=True)
    return exports
