#!/usr/bin/env python
"""The whole suite on every core: `make test` runs this (`python tests/parallel.py`).

Most tests run one thing at a time on one OpenMP thread (conftest.py), so one pytest
process keeps one of the machine's two cores busy. This splits the test files into
as many groups as there are usable cores and runs one pytest process per group, side
by side; their lines are printed as they come, prefixed with the group number.

A whole file goes to one group, so its module-scoped fixtures (finished runs) are
built once. Files are dealt largest first to the least loaded group, by the seconds
in COST (measured; a file not listed counts DEFAULT_COST): the costs only balance the
groups, they never decide what runs. The exit code is the first failing group's; if no
group ran a test (pytest's exit code 5 from all), the run fails with 5. Ctrl-C or
SIGTERM is passed on to every group, whose reports are still printed.

    python tests/parallel.py [--groups N] [PYTEST ARGS...]
"""
import argparse
import glob
import os
import signal
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))

# Seconds each file took in one serial run on a 2-core machine (--durations=0, summed).
COST = {
    'test_resume.py': 67, 'test_hardening.py': 60, 'test_fid.py': 52, 'test_launch.py': 49,
    'test_abuse.py': 32, 'test_diagnostics.py': 30, 'test_checkpoint_abuse.py': 23,
    'test_cli.py': 17, 'test_bf16.py': 14, 'test_inputs.py': 13, 'test_fashion.py': 12,
    'test_exercises.py': 9,
}
DEFAULT_COST = 2


def split(files, groups):
    """`files` dealt into `groups` lists of about equal COST, largest first."""
    loads, out = [0] * groups, [[] for _ in range(groups)]
    for path in sorted(files, key=lambda p: -COST.get(os.path.basename(p), DEFAULT_COST)):
        i = loads.index(min(loads))
        out[i].append(path)
        loads[i] += COST.get(os.path.basename(path), DEFAULT_COST)
    return [g for g in out if g]


def _relay(number, proc, lock):
    for line in proc.stdout:
        with lock:
            sys.stdout.write(f'[{number}] {line}')
            sys.stdout.flush()


def _exit_code(codes, signum):
    """The run's exit code: a signal's, else the first failure's. Exit 5 (no tests) from
    a group is a failure only when every group says so: under -k or -m, one group may
    well select nothing while the other runs the selected tests."""
    if signum:
        return 128 + signum
    failures = [code for code in codes if code not in (0, 5)]
    if failures:
        return failures[0]
    return 5 if all(code == 5 for code in codes) else 0


def run(groups, pytest_args):
    """Run the groups side by side; returns the exit code."""
    lock, procs, threads, received = threading.Lock(), [], [], []

    def forward(signum, frame):
        # Passed on as SIGINT whichever came: pytest takes it as Ctrl-C, stops its test
        # (subprocess.run kills the command it waits for), tears down and reports. A
        # SIGTERM would end pytest at once and orphan the command it was running.
        received.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    with tempfile.TemporaryDirectory(prefix='gluon_dcgan-tests-') as base:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, forward)
        for number, files in enumerate(groups, 1):
            # Each process its own --basetemp: pytest clears it at start, and its default
            # numbered folders are pruned by whichever process starts last.
            # -u: pytest's lines reach the relay as it prints them, not 8 KB at a time.
            cmd = [sys.executable, '-u', '-m', 'pytest', '-p', 'no:cacheprovider',
                   f'--basetemp={os.path.join(base, str(number))}'] + pytest_args + files
            # A session of its own: a Ctrl-C reaches it once, forwarded, not also from
            # the terminal. errors='replace': a stray byte must not stop the relay.
            proc = subprocess.Popen(cmd, cwd=os.path.dirname(HERE), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors='replace',
                                    start_new_session=True)
            procs.append(proc)
            threads.append(threading.Thread(target=_relay, args=(number, proc, lock)))
            threads[-1].start()
        for thread in threads:
            while thread.is_alive():  # short joins: the signal handler runs in between
                thread.join(0.2)
        codes = [proc.wait() for proc in procs]
    for number, code in enumerate(codes, 1):
        note = ' (no tests ran)' if code == 5 else ''
        print(f'group {number}: pytest exit code {code}{note}')
    return _exit_code(codes, received[0] if received else 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--groups', type=int, default=min(4, len(os.sched_getaffinity(0))),
                        help='pytest processes side by side (default: usable cores, at most 4)')
    args, pytest_args = parser.parse_known_args(argv)
    files = sorted(glob.glob(os.path.join(HERE, 'test_*.py')))
    if args.groups < 1 or not files:
        parser.error('need --groups >= 1 and at least one tests/test_*.py')
    paths = [a for a in pytest_args if not a.startswith('-') and os.path.exists(a)]
    if paths or any(a.startswith('--basetemp') for a in pytest_args):
        parser.error(f'this runs every test file, each group in its own --basetemp: for '
                     f'{" ".join(paths) or "--basetemp"}, run python -m pytest directly')
    return run(split(files, args.groups), pytest_args)


if __name__ == '__main__':
    sys.exit(main())
