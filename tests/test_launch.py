"""gluon_dcgan.launch: dist_sync clusters over loopback and over a real sshd, and no orphans.

Every address used is 127.0.0.1. A run's processes are found by their command line
(the run's --out-dir) or their environment (its scheduler port), so runs of other
people on the same machine are never counted or killed.
"""
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest

from conftest import FINAL_LINE, ROOT, assert_one_line_error

LAUNCH = [sys.executable, '-m', 'gluon_dcgan.launch']
TRAIN = ['python', 'run.py', '--data', 'synthetic', '--kvstore', 'dist_sync', '--epochs', '1',
         '--limit', '128', '--batch-size', '32', '--n-G', '16', '--n-D', '16', '--ctx', 'cpu',
         '--no-progress']


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(out, extra=(), workers=2, launcher_args=(), env=None, prefix=(), servers=1,
           port=True):
    """Start the launcher on a tiny synthetic run into `out`; returns (Popen, scheduler port).

    port=False lets the launcher choose the port (then returned as None)."""
    port = free_port() if port else None
    cmd = list(prefix) + LAUNCH + ['--workers', str(workers), '--servers', str(servers)] + \
        (['--port', str(port)] if port else []) + list(launcher_args) + ['--'] + TRAIN + \
        ['--out-dir', str(out)] + list(extra)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, port


def run_processes(out, port):
    """'pid args' of every live process of the run: its out dir in argv or its port in environ."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                args = f.read().replace(b'\0', b' ').decode(errors='replace').strip()
            with open(f'/proc/{pid}/environ', 'rb') as f:
                environ = f.read().split(b'\0')
            with open(f'/proc/{pid}/stat') as f:
                zombie = f.read().rsplit(')', 1)[1].split()[0] == 'Z'
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if int(pid) == os.getpid() or zombie:
            continue
        if str(out) in args or f'DMLC_PS_ROOT_PORT={port}'.encode() in environ:
            found.append(f'{pid} {args}')
    return found


def wait_for(condition, timeout, what):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)  # event-wait
    pytest.fail(f'{what}: not seen within {timeout} s')


def workers_of(out, port):
    """PIDs of the run's training processes (python run.py), not their guards or ssh."""
    return [int(l.split()[0]) for l in run_processes(out, port)
            if l.split()[1:3] == [sys.executable, 'run.py'] or
            (l.split()[1].endswith('python') and l.split()[2] == 'run.py')]


def kill_a_worker_and_check_cleanup(proc, out, port, expected_workers=2):
    """SIGKILL one worker mid-run; the launcher fails and no process of the run survives 15 s."""
    try:
        pids = wait_for(lambda: len(workers_of(out, port)) == expected_workers and
                        (out / 'config.json').exists() and workers_of(out, port),
                        120, 'both workers training')
        os.kill(pids[-1], signal.SIGKILL)
        start = time.time()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0, err[-2000:]
        assert 'stopping the others' in err, err[-2000:]
        left = []
        while time.time() - start < 15:
            left = run_processes(out, port)
            if not left:
                break
            time.sleep(0.1)  # event-wait
        assert not left, left
        return err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def finished(proc, workers=2):
    """Wait for a launched run; assert it trained to the end; returns (stdout, stderr)."""
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    finals = [l.split('] ', 1)[1] for l in stdout.splitlines() if 'examples/sec on' in l]
    assert len(finals) == workers and all(FINAL_LINE.match(l) for l in finals), stdout
    return stdout, stderr


def net_params(path):
    """{name: array} of a saved network, BatchNorm running statistics left out (per worker)."""
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items() if 'running' not in k}


def params_digest(path):
    """What a worker logs for its generator, computed from a saved net_G.params: SHA-256
    over each trainable parameter's structural name and float32 bytes, in name order."""
    digest = hashlib.sha256()
    for name, array in sorted(net_params(path).items()):
        digest.update(name.encode())
        digest.update(array.astype(onp.float32).tobytes())
    return digest.hexdigest()[:12]


def workers_weights(stderr, workers=2):
    """The generator digest every worker logs at the end; asserts that they all agree."""
    found = dict(re.findall(rf'^\[worker \d+\] worker (\d+)/{workers}: generator weights '
                            r'sha256 ([0-9a-f]{12})$', stderr, re.M))
    assert sorted(found) == [str(r) for r in range(workers)], stderr[-3000:]
    assert len(set(found.values())) == 1, found  # dist_sync workers diverged
    return found['0']


@pytest.fixture(scope='module')
def sshd(tmp_path_factory):
    """A private sshd on 127.0.0.1, and an ssh_config with hosts h1 and h2 pointing at it.

    Host-key checking stays on: known_hosts holds this sshd's own key. Returns the
    folder with ssh_config and hosts.txt."""
    sshd_bin = shutil.which('sshd') or '/usr/sbin/sshd'
    if not os.path.exists(sshd_bin) or not shutil.which('ssh-keygen') or not shutil.which('ssh'):
        pytest.skip('sshd is not installed (apt-get install openssh-server; .ci/run does)')
    d = tmp_path_factory.mktemp('sshd')
    for key in ('host_key', 'user_key'):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(d / key)],
                       check=True)
    shutil.copy(d / 'user_key.pub', d / 'authorized_keys')
    if os.geteuid() == 0:
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)  # sshd's privilege separation
    port = free_port()
    (d / 'sshd_config').write_text(
        f'Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n'
        f'AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n'
        'PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n'
        'PermitRootLogin prohibit-password\nStrictModes no\nLogLevel ERROR\n')
    host_key = (d / 'host_key.pub').read_text().split()
    (d / 'known_hosts').write_text(f'[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n')
    (d / 'ssh_config').write_text(
        f'Host h1 h2\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {d}/user_key\n'
        f'  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n'
        '  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n')
    user = pwd.getpwuid(os.getuid()).pw_name  # the [user@]host[:port] form, too
    (d / 'hosts.txt').write_text(f'# two aliases of this machine\nh1\n{user}@h2:{port}\n')
    server = subprocess.Popen([sshd_bin, '-D', '-e', '-f', str(d / 'sshd_config')],
                              stderr=subprocess.PIPE, text=True)
    try:
        def answers():
            probe = subprocess.run(['ssh', '-F', str(d / 'ssh_config'), '-o', 'BatchMode=yes',
                                    'h1', 'true'], capture_output=True, text=True)
            assert server.poll() is None, server.stderr.read()
            return probe.returncode == 0
        wait_for(answers, 30, 'sshd accepting the test key')
        yield d
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.slow
def test_ssh_two_workers_train_to_the_end(sshd, tmp_path):
    out = tmp_path / 'S'
    proc, _ = launch(out, launcher_args=['--hostfile', str(sshd / 'hosts.txt'),
                                         '--ssh-config', str(sshd / 'ssh_config')], port=False)
    stdout, stderr = finished(proc)
    # The port was chosen on h1, over ssh; ps-lite binds the address ssh resolves for h1.
    port = int(re.search(r'scheduler at 127\.0\.0\.1:(\d+),', stderr)[1])
    assert stderr.count('64 of 128 images per epoch') == 2, stderr[-3000:]
    assert 'has rank' in stderr  # labels follow the ranks ps-lite gave
    assert (out / 'export' / 'generator.onnx').exists()
    assert not run_processes(out, port)


@pytest.mark.slow
def test_ssh_worker_killed_leaves_no_process_on_any_host(sshd, tmp_path):
    out = tmp_path / 'K'
    proc, port = launch(out, extra=['--epochs', '50'],
                        launcher_args=['--hostfile', str(sshd / 'hosts.txt')],
                        env={'GLUON_DCGAN_SSH_CONFIG': str(sshd / 'ssh_config')})
    kill_a_worker_and_check_cleanup(proc, out, port)


@pytest.mark.slow
def test_loopback_dist_sync(tmp_path, uninterrupted):
    ref, stderr = uninterrupted
    assert stderr.count('64 of 128 images per epoch') == 2  # each worker saw half
    assert (ref / 'export' / 'generator.onnx').exists() and (ref / 'metrics.jsonl').exists()
    ckpts = sorted((ref / 'checkpoints').iterdir())
    assert [c.name for c in ckpts] == ['ckpt-E0001-B000000', 'ckpt-E0002-B000000']
    assert {'server-0.params', 'server-0.json'} <= set(json.loads(
        (ckpts[0] / 'manifest.json').read_text()))  # the servers' Adam state is in it
    # Both workers end with the weights rank 0 saved (and the digest sees training).
    assert workers_weights(stderr) == params_digest(ckpts[1] / 'net_G.params') != \
        params_digest(ckpts[0] / 'net_G.params')
    # The same run, stopped after epoch 1 and resumed: both workers restart from rank
    # 0's checkpoint and end identical.
    out = tmp_path / 'E'
    shutil.copytree(ref, out, ignore=shutil.ignore_patterns('ckpt-E0002-*', 'export'))
    proc, port = launch(out, extra=['--epochs', '2', '--resume'])
    _, stderr = finished(proc)
    assert stderr.count('resuming from') == 2, stderr[-3000:]
    assert not run_processes(out, port)
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2]
    assert workers_weights(stderr) == params_digest(
        out / 'checkpoints' / 'ckpt-E0002-B000000' / 'net_G.params')
    # ... and, with the Adam moments restored on the servers, like the run never stopped.
    # Measured: 0.0 (without the servers' state: 2.2e-2, 83 % of the largest weight).
    for net in ('net_G', 'net_D'):
        resumed, reference = (net_params(d / 'checkpoints' / 'ckpt-E0002-B000000' /
                                         f'{net}.params') for d in (out, ref))
        for k in reference:
            assert onp.abs(resumed[k] - reference[k]).max() <= 1e-6, (net, k)


@pytest.mark.slow
def test_resuming_with_another_number_of_servers_is_refused(tmp_path, uninterrupted):
    out = tmp_path / 'R'
    shutil.copytree(uninterrupted[0], out, ignore=shutil.ignore_patterns('export'))
    def files():  # the run's files; .lock only records the PID of its latest owner
        return {p: p.read_bytes() for p in out.rglob('*') if p.is_file() and p.name != '.lock'}

    before = files()
    proc, port = launch(out, extra=['--epochs', '3', '--resume'], servers=2)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    errors = [l for l in err.splitlines() if '] error: ' in l]
    assert errors and all(l.endswith('resume with --servers 1') for l in errors), err[-3000:]
    assert 'Traceback' not in err
    assert files() == before
    assert not run_processes(out, port)


@pytest.mark.slow
def test_launcher_stops_everything_when_a_worker_dies(tmp_path):
    out = tmp_path / 'F'
    proc, port = launch(out, extra=['--epochs', '50'])
    kill_a_worker_and_check_cleanup(proc, out, port)


def _unshare_permitted():
    if not shutil.which('unshare') or not shutil.which('ip'):
        return False
    probe = subprocess.run(['unshare', '-n', 'ip', 'link', 'set', 'lo', 'up'],
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """A 2-epoch run in one go, inside `unshare -n` (only `lo`) where permitted, else plainly.

    Returns (run folder, the launcher's stderr)."""
    out = tmp_path_factory.mktemp('uninterrupted') / 'U'
    inside = 'ip link set lo up && exec "$@"'  # a fresh namespace's lo starts down
    prefix = ['unshare', '-n', 'sh', '-c', inside, 'sh'] if _unshare_permitted() else []
    proc, port = launch(out, extra=['--epochs', '2'], prefix=prefix)
    _, stderr = finished(proc)
    assert not run_processes(out, port)
    return out, stderr


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_permitted(), reason='unshare -n is not permitted here '
                    '(needs root or user namespaces, and iproute2)')
def test_local_mode_trains_in_a_network_namespace_with_only_loopback(uninterrupted):
    # ps-lite used to look for a non-loopback card and fail: "failed to get the interface".
    out, _ = uninterrupted
    assert (out / 'export' / 'generator.onnx').exists()
    rows = (out / 'metrics.jsonl').read_text().splitlines()
    assert [json.loads(r)['epoch'] for r in rows] == [1, 2]


@pytest.mark.cli
def test_help_works_from_any_folder(tmp_path):
    proc = subprocess.run(LAUNCH + ['--help'], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0 and '--hostfile' in proc.stdout and not proc.stderr


@pytest.mark.cli
@pytest.mark.parametrize('args, says', [
    (['--workers', '2'], 'after --'),
    (['--workers', '2', '--'], 'after --'),
    (['--workers', '0', '--', 'python', 'run.py'], 'at least 1'),
    (['--workers', '1', '--servers', '-1', '--', 'python', 'run.py'], 'at least 1'),
    (['--workers', 'two', '--', 'python', 'run.py'], 'invalid int'),
    (['--workers', '1', '--port', '70000', '--', 'python', 'run.py'], '--port'),
    (['--workers', '1', '--hostfile', 'MISSING', '--', 'python', 'run.py'], 'cannot read'),
    (['--workers', '1', '--hostfile', 'EMPTY', '--', 'python', 'run.py'], 'no hosts'),
    (['--workers', '1', '--hostfile', 'BAD', '--', 'python', 'run.py'], '[user@]host[:port]'),
    (['--workers', '1', '--ssh-config', 'MISSING', '--hostfile', 'BAD', '--', 'x'],
     '--ssh-config'),
])
def test_launcher_errors_are_one_line_exit_2(tmp_path, args, says):
    (tmp_path / 'EMPTY').write_text('# nothing\n\n')
    (tmp_path / 'BAD').write_text('h1\nalice@h2:22:33\n')
    args = [str(tmp_path / a) if a in ('MISSING', 'EMPTY', 'BAD') else a for a in args]
    proc = subprocess.run(LAUNCH + args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    line = assert_one_line_error(proc, code=2, contains=says)
    assert line.startswith('error: ')


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_ssh_signal_to_the_launcher_stops_every_process(sshd, tmp_path, signum):
    out = tmp_path / 'I'
    proc, port = launch(out, extra=['--epochs', '50'],
                        launcher_args=['--hostfile', str(sshd / 'hosts.txt'),
                                       '--ssh-config', str(sshd / 'ssh_config')])
    try:
        wait_for(lambda: len(workers_of(out, port)) == 2 and (out / 'config.json').exists(),
                 120, 'both workers training')
        start = time.time()
        os.kill(proc.pid, signum)  # Ctrl-C reaches the launcher alone: it is the foreground
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signum, err[-2000:]
        wait_for(lambda: not run_processes(out, port), max(1, 15 - (time.time() - start)),
                 'every process of the run gone')
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.mark.cli
def test_the_guard_says_in_one_line_that_a_command_cannot_start():
    guard = os.path.join(ROOT, 'gluon_dcgan', 'dist', 'guard.py')
    proc = subprocess.run([sys.executable, guard, '1', '--', '/nonexistent/pyhton'],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    line = assert_one_line_error(proc, code=127, contains="cannot start '/nonexistent/pyhton'")
    assert 'No such file or directory' in line


@pytest.mark.slow
def test_ssh_mode_never_runs_a_forwarded_variable_name_or_value(sshd, tmp_path):
    """A name that is not a shell identifier is skipped; a value is only ever data."""
    marker_name, marker_value = tmp_path / 'pwned-by-name', tmp_path / 'pwned-by-value'
    env = {f'GLUON_DCGAN_X$(touch {marker_name})': '1',
           'GLUON_DCGAN_Y': f'$(touch {marker_value}); `touch {marker_value}`'}
    proc, _ = launch(tmp_path / 'S', workers=1, env=env, port=False,
                     launcher_args=['--hostfile', str(sshd / 'hosts.txt'),
                                    '--ssh-config', str(sshd / 'ssh_config')])
    _, stderr = finished(proc, workers=1)
    assert not marker_name.exists() and not marker_value.exists()
    assert "not forwarding the variable 'GLUON_DCGAN_X$(touch" in stderr


@pytest.mark.cli
def test_a_hostfile_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / 'hosts.fifo'
    os.mkfifo(fifo)  # opened for reading, a FIFO without a writer would block forever
    for hostfile in ('/dev/zero', str(fifo)):
        proc = subprocess.run(LAUNCH + ['--workers', '1', '--hostfile', hostfile, '--', 'x'],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert_one_line_error(proc, code=2, contains='is not a regular file')


@pytest.mark.cli
@pytest.mark.parametrize('mode', ['local', 'ssh'])
def test_a_deleted_current_folder_is_one_line(tmp_path, mode):
    gone = tmp_path / 'gone'
    gone.mkdir()
    # --port: no ssh connection for one; the launcher used to get as far as building the
    # first remote command (os.getcwd: a FileNotFoundError traceback).
    (tmp_path / 'hosts.txt').write_text('localhost\n')
    hosts = ['--hostfile', str(tmp_path / 'hosts.txt'), '--port', '9'] if mode == 'ssh' else []
    script = (f'cd {shlex.quote(str(gone))} && rmdir {shlex.quote(str(gone))} && exec '
              + shlex.join(LAUNCH + ['--workers', '1'] + hosts + ['--', 'python', 'run.py']))
    proc = subprocess.run(['sh', '-c', script], capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, code=2, contains='the current folder was deleted: cd to an '
                          'existing folder')


@pytest.mark.cli
def test_hostfile_names_that_ssh_or_a_shell_would_run_are_refused(tmp_path):
    """ssh reads a leading '-' as an option (-oProxyCommand runs a command), and an ssh
    configuration may put a user or host name into one (%r, %h): letters, digits, ._- only."""
    marker = tmp_path / 'MARKER'
    for line in (f'-oProxyCommand=touch${{IFS}}{marker}', f'a$(touch${{IFS}}{marker})@h1',
                 f'h1`touch${{IFS}}{marker}`', '-lroot@h1', 'h1;true'):
        (tmp_path / 'hosts.txt').write_text(f'h1\n{line}\n')
        hostfile = ['--hostfile', str(tmp_path / 'hosts.txt')]
        proc = subprocess.run(LAUNCH + ['--workers', '1'] + hostfile + ['--', 'python', 'run.py'],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert_one_line_error(proc, code=2, contains=f'{line!r} is not [user@]host[:port]')
        assert not marker.exists()


@pytest.mark.cli
def test_output_that_is_not_utf8_is_passed_on_and_the_exit_code_reported():
    """A stray byte in a worker's output used to kill the thread that copies it (a
    UnicodeDecodeError traceback, and the rest of its output lost)."""
    worker = ("import sys; sys.stderr.buffer.write(b'bad \\xff\\xfe byte\\n'); "
              "sys.stderr.write('error: the reason\\n'); sys.exit(3)")
    proc = subprocess.run(LAUNCH + ['--workers', '1', '--', 'python', '-c', worker], cwd=ROOT,
                          capture_output=True, text=True, errors='replace', timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert 'Traceback' not in proc.stderr and '[worker #0] bad ' in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == \
        'launch: worker #0 exited with 3: error: the reason; stopping the others', proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('mode, workers', [('local', 1), ('local', 2), ('ssh', 2)])
def test_a_chief_that_refuses_to_start_is_the_one_reported(request, tmp_path, mode, workers):
    """The chief refuses (its run folder is locked); with two workers the other one goes on,
    pushes a key the chief never initialised, and the server aborts with a C++ dump (the
    launcher used to exit 134 blaming server #0). The chief's line is the one reported."""
    import fcntl
    hosts = []
    if mode == 'ssh':
        sshd = request.getfixturevalue('sshd')
        hosts = ['--hostfile', str(sshd / 'hosts.txt'), '--ssh-config', str(sshd / 'ssh_config')]
    out = tmp_path / 'locked'
    out.mkdir()
    with open(out / '.lock', 'w') as held:  # as gluon_dcgan.train.rundir.lock takes it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc, port = launch(out, workers=workers, launcher_args=hosts)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert re.match(r'launch: worker #\d(@h\d)? (exited with 2|failed): error: \S+ is in use '
                    r'by another gluon_dcgan process .*; stopping the others$', last), stderr
    assert 'terminate' not in stderr and 'server #0' not in stderr, stderr
    assert 'Traceback' not in stderr, stderr
    wait_for(lambda: not run_processes(out, port), 15, 'every process of the run gone')
