"""Check an MXNet graph file (generator-symbol.json) before MXNet parses it.

dmlc's JSON reader, which MXNet's symbol loader uses, recurses without limit: a
graph with `subgraphs` nested some thousands deep kills the process (SIGSEGV). So
the text is first parsed by files.parse_json (bounded depth) and checked to be a
graph of the shape HybridBlock.export writes: nodes, arg_nodes, node_row_ptr, heads
and attrs, each node an op with string attributes and inputs that point back to
earlier nodes, and no subgraphs (a generator has no control flow).
"""
from ..files import Damaged, parse_json

GRAPH_KEYS = {'nodes', 'arg_nodes', 'node_row_ptr', 'heads', 'attrs'}
NODE_KEYS = {'op', 'name', 'attrs', 'inputs'}
MAX_NODES = 100_000  # a DCGAN generator has about 40


def _ints(value, size=None):
    return (isinstance(value, list) and (size is None or len(value) == size) and
            all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))


def _strings(value):
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _entry(value, below):
    """An input or head: [node, output, version] (or without version) of a node < `below`."""
    return _ints(value) and len(value) in (2, 3) and value[0] < below


def _node_problem(node, index):
    if not isinstance(node, dict) or not {'op', 'name', 'inputs'} <= set(node):
        return 'is not an operator with a name and inputs'
    if set(node) - NODE_KEYS:
        return f'has {sorted(set(node) - NODE_KEYS)[0]!r}, which exports do not write'
    if not (isinstance(node['op'], str) and isinstance(node['name'], str) and
            _strings(node.get('attrs', {}))):
        return 'has an op, name or attribute that is not text'
    if not (isinstance(node['inputs'], list) and
            all(_entry(i, index) for i in node['inputs'])):
        return 'has inputs that are not earlier nodes'
    return None


def _graph_problem(graph):
    if not isinstance(graph, dict) or not {'nodes', 'arg_nodes', 'heads'} <= set(graph):
        return 'is not a graph (nodes, arg_nodes, heads)'
    if set(graph) - GRAPH_KEYS:
        return f'has {sorted(set(graph) - GRAPH_KEYS)[0]!r}, which exports do not write'
    nodes = graph['nodes']
    if not isinstance(nodes, list) or not 0 < len(nodes) <= MAX_NODES:
        return f'does not hold 1 to {MAX_NODES} nodes'
    for index, node in enumerate(nodes):
        problem = _node_problem(node, index)
        if problem:
            return f'node {index} {problem}'
    if not (_ints(graph['arg_nodes']) and all(i < len(nodes) for i in graph['arg_nodes'])):
        return 'has arg_nodes that are not nodes'
    heads = graph['heads']
    if not (isinstance(heads, list) and heads and all(_entry(h, len(nodes)) for h in heads)):
        return 'has heads that are not nodes'
    if not (_ints(graph.get('node_row_ptr', [])) and isinstance(graph.get('attrs', {}), dict)):
        return 'has a node_row_ptr or attrs of the wrong kind'
    return None


def check_graph(text, name):
    """Raise files.Damaged unless `text` is a graph of the shape exports write."""
    if isinstance(text, bytes):
        try:
            text = text.decode('utf-8')
        except UnicodeDecodeError:
            raise Damaged(f'{name} is not UTF-8 text') from None
    problem = _graph_problem(parse_json(text, name))
    if problem:
        raise Damaged(f'{name} {problem}')
