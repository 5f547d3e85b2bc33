"""The ssh side of gluon_dcgan.launch: hostfile lines, what ssh makes of them, a remote port.

A hostfile line is ``[user@]host[:port]``; ``host`` may be an alias of the user's ssh
configuration. ``ssh -G`` (which does not connect) gives the address ps-lite binds on
that host and whether keep-alives are configured.
"""
import re
import shlex
import socket
import subprocess
import sys

from .errors import UserError, last_line
from .files import Damaged, read_bounded

MAX_HOSTFILE = 1 << 20  # a hostfile is a few lines: 1 MiB is far more than any

HOST_LINE = re.compile(r'^(?:(?P<user>[^@\s:]+)@)?(?P<host>[^@\s:]+)(?::(?P<port>\d{1,5}))?$')
PORT_CODE = 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'


class Host:
    """One hostfile line: where ssh goes, and the address ps-lite binds there."""

    def __init__(self, m, ssh):
        self.name = m['host']
        target = (['-l', m['user']] if m['user'] else []) + \
            (['-p', m['port']] if m['port'] else []) + [self.name]
        # ssh -G prints the configuration ssh would use (aliases resolved), offline.
        proc = subprocess.run([ssh[0], '-G'] + ssh[1:] + target, capture_output=True, text=True)
        config = dict(l.split(None, 1) for l in proc.stdout.splitlines() if ' ' in l)
        if proc.returncode or 'hostname' not in config:
            reason = last_line(proc.stderr, empty='no message')
            raise UserError(f'ssh -G {self.name} failed: {reason}')
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
    code = f'{shlex.quote(sys.executable)} -c {shlex.quote(PORT_CODE)}'
    try:
        proc = subprocess.run(host.run(code), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise UserError(f'ssh {host.name} did not answer in 60 s; check ssh, or give --port') \
            from None
    if proc.returncode or not proc.stdout.strip().isdigit():
        reason = last_line(proc.stderr, empty='no message')
        raise UserError(f'cannot choose the scheduler port on {host.name} over ssh '
                        f'({reason}); check ssh, or give --port')
    return int(proc.stdout.strip())
