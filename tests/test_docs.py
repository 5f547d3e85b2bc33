"""Unit: the documentation says what the code does (the error table cannot drift)."""
import ast
import os
import re

from conftest import ROOT

PACKAGE = os.path.join(ROOT, 'gluon_dcgan')
# Words of an error line that stand for a value: N, DIR, RUN, FOLDER, X, ...
PLACEHOLDER = re.compile(r'^[A-Z][A-Z_]*$|\d')


def _messages():
    """Every string literal in the package, a formatted value as '\\0' (f'a {x} b' -> 'a \\0 b')."""
    texts = []
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith('.py'):
                continue
            tree = ast.parse(open(os.path.join(folder, name), encoding='utf-8').read())
            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr):
                    texts.append(''.join(v.value if isinstance(v, ast.Constant) else '\0'
                                         for v in node.values))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    texts.append(node.value)
    return texts


def _is_value(word):
    """N, RUN/export, 0.5, ...: a word standing for something the message interpolates."""
    if '...' in word or '…' in word:
        return True
    return any(PLACEHOLDER.search(part.strip('(),:;.\'"-')) for part in word.split('/'))


def _chunks(span):
    """The runs of three or more literal words in an error table's `span`."""
    span = re.sub(r'^argument --[\w-]+: ', '', span)  # argparse writes that part
    runs, run = [], []
    for word in span.split():
        if _is_value(word):
            runs.append(run)
            run = []
        else:
            run.append(word)
    return [' '.join(r).strip('()') for r in runs + [run] if len(r) >= 3]


def test_every_message_in_the_error_table_is_one_the_code_prints():
    table = open(os.path.join(ROOT, 'docs', 'errors.md'), encoding='utf-8').read()
    rows = [line for line in table.splitlines() if line.startswith('| `')]
    assert len(rows) > 40
    messages = _messages()
    missing = []
    for row in rows:
        for span in re.findall(r'`([^`]+)`', row.split(' | ')[0]):
            for chunk in _chunks(span):
                if not any(chunk in text for text in messages):
                    missing.append(chunk)
    assert not missing, missing
