"""Start a dist_sync training: scheduler, servers and workers on MXNet's ps-lite KVStore.

    python -m gluon_dcgan.launch --workers 2 --servers 1 -- python run.py --kvstore dist_sync ...

Processes run locally by default, or over ssh on the hosts of --hostfile (one host
per line; the first also runs the scheduler). The launcher only sets the DMLC_*
variables and supervises: MXNet does the synchronisation. Each output line is
prefixed with the process's role and index. If any process fails, the others are
stopped and the launcher exits with that process's code.
"""
import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

# Scheduler and servers only need MXNet imported with their DMLC_ROLE: the
# import itself runs the ps-lite server loop and exits when training ends.
SERVER_CMD = [sys.executable, '-c', 'import mxnet']


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _read_hosts(path):
    try:
        with open(path) as f:
            hosts = [l.strip() for l in f if l.strip() and not l.startswith('#')]
    except OSError as exc:
        sys.exit(f'launch: error: cannot read --hostfile {path!r} ({exc.strerror})')
    if not hosts:
        sys.exit(f'launch: error: --hostfile {path!r} lists no hosts')
    return hosts


def _forward(stream, prefix, out):
    for line in iter(stream.readline, ''):
        out.write(f'[{prefix}] {line}')
        out.flush()
    stream.close()


class Cluster:
    """The launched processes, each with its role label."""

    def __init__(self):
        self.procs = []

    def start(self, label, cmd, env, host=None):
        if host:
            exports = ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items()
                               if k.startswith('DMLC_') or k == 'OMP_NUM_THREADS')
            remote = f'cd {shlex.quote(os.getcwd())} && env {exports} {shlex.join(cmd)}'
            cmd, env = ['ssh', '-o', 'StrictHostKeyChecking=no', host, remote], None
        proc = subprocess.Popen(cmd, env=None if env is None else dict(os.environ, **env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own group: stop its children too
        for stream, out in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
            threading.Thread(target=_forward, args=(stream, label, out), daemon=True).start()
        self.procs.append((label, proc))

    def stop_all(self, grace=5.0):
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut this short
            signal.signal(sig, signal.SIG_IGN)
        for _, proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + grace
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def supervise(self, poll=0.2):
        """Wait for the workers; the first failure stops everything. Returns the exit code."""
        workers = [(l, p) for l, p in self.procs if l.startswith('worker')]
        while True:
            for label, proc in self.procs:
                code = proc.poll()
                if code not in (None, 0):
                    print(f'launch: {label} exited with {code}; stopping the others',
                          file=sys.stderr, flush=True)
                    self.stop_all()
                    return code if code > 0 else 128 - code
            if all(p.poll() == 0 for _, p in workers):
                self.stop_all(grace=10.0)  # scheduler and servers end once workers leave
                return 0
            time.sleep(poll)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    """Parse, start every role, supervise; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if '--' not in argv:
        sys.exit('launch: error: put the training command after --, e.g. '
                 '-- python run.py --kvstore dist_sync ...')
    split = argv.index('--')
    p = argparse.ArgumentParser(prog='python -m gluon_dcgan.launch', description=__doc__)
    p.add_argument('--workers', type=int, required=True, help='worker processes (one per host)')
    p.add_argument('--servers', type=int, default=1, help='parameter servers (default: 1)')
    p.add_argument('--hostfile', help='hosts to ssh into, one per line (default: local)')
    p.add_argument('--port', type=int, help='scheduler port (default: a free one)')
    args = p.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command or args.workers < 1 or args.servers < 1:
        p.error('need a command after --, and --workers/--servers >= 1')
    hosts = _read_hosts(args.hostfile) if args.hostfile else None
    root = hosts[0] if hosts else '127.0.0.1'
    env = {'DMLC_PS_ROOT_URI': root if not hosts else socket.gethostbyname(root),
           'DMLC_PS_ROOT_PORT': str(args.port or _free_port()),
           'DMLC_NUM_SERVER': str(args.servers), 'DMLC_NUM_WORKER': str(args.workers)}
    if command[0] in ('python', 'python3'):
        command = [sys.executable] + command[1:]
    cluster = Cluster()
    host = (lambda i: hosts[i % len(hosts)]) if hosts else (lambda i: None)
    signal.signal(signal.SIGTERM, _interrupt)  # stopping the launcher stops its processes
    try:
        cluster.start('scheduler', SERVER_CMD, dict(env, DMLC_ROLE='scheduler'), host(0))
        for i in range(args.servers):
            cluster.start(f'server {i}', SERVER_CMD, dict(env, DMLC_ROLE='server'), host(i))
        for i in range(args.workers):
            cluster.start(f'worker {i}', command, dict(env, DMLC_ROLE='worker'), host(i))
        return cluster.supervise()
    except KeyboardInterrupt:
        cluster.stop_all()
        return 130


if __name__ == '__main__':
    sys.exit(main())
