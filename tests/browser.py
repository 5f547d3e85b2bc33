"""Headless Chromium driven over its DevTools pipe, for tests that read what a page shows.

With --remote-debugging-pipe the browser reads commands on its fd 3 and writes answers
and events on its fd 4, as JSON messages ended by a NUL byte: no debugging port is
opened. Every request to a host other than 127.0.0.1 goes nowhere (no name resolves,
and the proxy for everything but the loopback is a closed port), so tests talk to this
machine only.
"""
import fcntl
import json
import os
import shutil
import subprocess
import threading

# Debian's package is chromium; the other names are other distributions' for the same.
NAMES = ('chromium', 'chromium-browser', 'google-chrome')
FLAGS = ['--headless', '--disable-gpu', '--remote-debugging-pipe', '--no-first-run',
         '--no-default-browser-check', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-extensions',
         '--disable-default-apps', '--window-size=1200,1000',
         '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
         '--proxy-server=127.0.0.1:9']


def chromium():
    """The path of a Chromium on PATH, or None."""
    return next(filter(None, map(shutil.which, NAMES)), None)


def _high(fd):
    """`fd` moved to 10 or above, so the shell's 3<& and 4>& below never overwrite it (bash,
    not sh: dash takes no fd above 9)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium with one page (a DevTools session on it)."""

    def __init__(self, profile, timeout=60):
        self.timeout, self._next_id = timeout, 0
        self._answers, self._events = {}, []
        self._changed = threading.Condition()
        commands_in, self._commands = os.pipe()
        self._answers_fd, answers_out = os.pipe()
        commands_in, answers_out = _high(commands_in), _high(answers_out)
        # No sandbox: Chromium's needs user namespaces, which a container or root lacks.
        sandbox = ['--no-sandbox'] if os.geteuid() == 0 else []
        self._log = open(os.path.join(profile, 'chromium.log'), 'w')
        self.proc = subprocess.Popen(
            ['bash', '-c', f'exec "$0" "$@" 3<&{commands_in} 4>&{answers_out} '
                              f'{commands_in}<&- {answers_out}>&-',
             chromium(), f'--user-data-dir={profile}'] + FLAGS + sandbox + ['about:blank'],
            pass_fds=(commands_in, answers_out), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=self._log)
        os.close(commands_in)
        os.close(answers_out)
        threading.Thread(target=self._read, daemon=True).start()
        try:
            target = self.call('Target.createTarget', url='about:blank')['targetId']
            self.session = self.call('Target.attachToTarget', targetId=target,
                                     flatten=True)['sessionId']
            self.call('Page.enable', session=True)
        except BaseException:
            self.close()  # no browser is left behind by a failed start
            raise

    def _read(self):
        buffer = b''
        with os.fdopen(self._answers_fd, 'rb', buffering=0) as answers:
            while chunk := answers.read(1 << 16):
                *messages, buffer = (buffer + chunk).split(b'\0')
                with self._changed:
                    for message in map(json.loads, messages):
                        if 'id' in message:
                            self._answers[message['id']] = message
                        else:
                            self._events.append(message)
                    self._changed.notify_all()
        with self._changed:  # the browser has gone: no answer will come
            self._answers[None] = None
            self._changed.notify_all()

    def _wait(self, found, what):
        with self._changed:
            if not self._changed.wait_for(lambda: found() or None in self._answers,
                                          self.timeout):
                raise AssertionError(f'Chromium sent no {what} in {self.timeout} s')
            if not found():
                raise AssertionError(f'Chromium exited before {what} (see {self._log.name})')
            return found()

    def call(self, method, session=False, **params):
        """The result of one DevTools command; AssertionError on an error answer."""
        self._next_id += 1
        ident, message = self._next_id, {'id': self._next_id, 'method': method,
                                          'params': params}
        if session:
            message['sessionId'] = self.session
        os.write(self._commands, json.dumps(message).encode() + b'\0')
        answer = self._wait(lambda: self._answers.get(ident), f'answer to {method}')
        if 'error' in answer:
            raise AssertionError(f'{method}: {answer["error"]}')
        return answer['result']

    def open(self, url):
        """Load `url` in the page and wait for its load event."""
        loaded = len(self._events)
        self.call('Page.navigate', session=True, url=url)
        self._wait(lambda: any(e['method'] == 'Page.loadEventFired'
                               for e in self._events[loaded:]), f'load event of {url}')

    def js(self, expression):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call('Runtime.evaluate', session=True, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if 'exceptionDetails' in result:
            details = result['exceptionDetails']
            raise AssertionError(details.get('exception', {}).get('description') or details)
        return result['result'].get('value')

    def close(self):
        try:
            self.call('Browser.close')
        except AssertionError:
            pass
        finally:
            os.close(self._commands)
            try:
                self.proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
