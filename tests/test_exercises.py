"""The chapter's exercises: the activation ablation and its measures."""
import json

import numpy as onp
import pytest

from conftest import assert_one_line_error, run_cli
from gluon_dcgan.tools.ablate_activation import COLUMNS, dead_unit_share, mean_pairwise_distance


@pytest.mark.unit
def test_dead_unit_share_on_a_hand_built_case():
    a = onp.full((2, 4, 3, 3), -1.0)      # block 1: 4 channels
    a[1, 0, 2, 2] = 0.5                    # channel 0 fires once: alive
    a[:, 1] = 2.0                          # channel 1 always fires: alive
    a[:, 2] = 0.0                          # exactly 0 is not positive: dead
    b = onp.ones((2, 2, 1, 1))             # block 2: 2 live channels
    assert dead_unit_share([a, b]) == 2 / 6  # channels 2 and 3 of block 1


@pytest.mark.unit
def test_mean_pairwise_distance():
    x = onp.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert abs(mean_pairwise_distance(x) - (5 + 0 + 5) / 3) < 1e-12


@pytest.mark.slow
def test_ablate_activation_end_to_end(tmp_path):
    out = tmp_path / 'A'
    proc = run_cli(['ablate-activation', '--data', 'synthetic', '--epochs', '2', '--limit', '64',
                    '--batch-size', '32', '--n-G', '16', '--n-D', '16', '--ctx', 'cpu',
                    '--no-progress', '--out-dir', str(out)])
    assert proc.returncode == 0, proc.stderr
    for variant in ('leaky', 'relu'):
        assert (out / variant / 'export' / 'generator.onnx').exists()
        cfg = json.loads((out / variant / 'config.json').read_text())
        assert cfg['d_activation'] == variant and cfg['seed'] == 0
    assert (out / 'ablation.png').stat().st_size > 10_000
    table = [l for l in (out / 'ablation.md').read_text().splitlines() if l.startswith('|')]
    assert table[0] == '| ' + ' | '.join(COLUMNS) + ' |'
    rows = [l.strip('|').split('|') for l in table[2:]]
    assert [r[0].strip() for r in rows] == ['leaky', 'relu']
    for r in rows:
        values = [float(v) for v in r[1:]]
        assert len(values) == len(COLUMNS) - 1 and onp.isfinite(values).all()
        assert 0 <= values[2] <= 1 and 0 <= values[3] <= 1 and 0 <= values[4] <= 1
    # The three reports are recorded as its own: a second run may replace them.
    from gluon_dcgan.tools.outputs import check_replaceable
    from gluon_dcgan.tools.ablate_activation import COMMAND, REPORTS
    check_replaceable(str(out), REPORTS, COMMAND)


@pytest.mark.unit
def test_ablate_activation_refuses_the_flag_it_sets_itself(tmp_path, main_in_process):
    proc = main_in_process(['ablate-activation', '--data', 'synthetic', '--d-activation', 'relu',
                            '--out-dir', str(tmp_path / 'ab')])
    assert_one_line_error(proc, contains='drop --d-activation')
    assert not (tmp_path / 'ab').exists()


@pytest.mark.unit
def test_ablate_activation_refuses_a_report_of_the_users_before_training(tmp_path,
                                                                         main_in_process):
    out = tmp_path / 'ab'
    out.mkdir()
    (out / 'ablation.md').write_text('my notes\n')
    proc = main_in_process(['ablate-activation', '--data', 'synthetic', '--limit', '64',
                            '--batch-size', '32', '--epochs', '1', '--n-G', '16', '--n-D', '16',
                            '--ctx', 'cpu', '--no-progress', '--out-dir', str(out)])
    line = assert_one_line_error(proc, contains='ablation.md was not written by ablate-activation')
    assert '--overwrite' in line
    assert (out / 'ablation.md').read_text() == 'my notes\n'
    assert sorted(p.name for p in out.iterdir()) == ['ablation.md']  # no training began


@pytest.mark.unit
def test_outputs_replace_only_what_they_recorded(tmp_path):
    from gluon_dcgan.errors import UserError
    from gluon_dcgan.tools.outputs import RECORD, check_replaceable, record_written
    names = ('a.md', 'a.png')
    check_replaceable(str(tmp_path), names, 'cmd')  # nothing there yet
    for name in names:
        (tmp_path / name).write_text(f'written by cmd: {name}')
    record_written(str(tmp_path), names)
    check_replaceable(str(tmp_path), names, 'cmd')  # its own files: replaced freely
    (tmp_path / 'a.png').write_text('edited by the user')
    with pytest.raises(UserError, match=r'a\.png was not written by cmd .*--overwrite'):
        check_replaceable(str(tmp_path), names, 'cmd')
    check_replaceable(str(tmp_path), names, 'cmd', overwrite=True)
    (tmp_path / 'a.png').unlink()
    (tmp_path / 'a.png').mkdir()
    with pytest.raises(UserError, match='is a folder'):
        check_replaceable(str(tmp_path), names, 'cmd', overwrite=True)
    (tmp_path / RECORD).write_text('{"files": {"a.md": "0"}}')  # not a record gluon_dcgan wrote
    with pytest.raises(UserError, match='is not the record of outputs'):
        check_replaceable(str(tmp_path), ('a.md',), 'cmd')
    assert (tmp_path / 'a.md').read_text() == 'written by cmd: a.md'
