"""A structural reader for the Alloy (River) configs: blocks, labels and attributes.

No Alloy binary is available in CI, so the tests parse the files into nested dicts and
check the blocks and arguments the pipelines rely on. Values are kept as source text
(strings unquoted), which is enough to assert what is wired to what.
"""

import re

TOKEN = re.compile(r'''
    (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}\[\]()=,:+\-*/])
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<space>\s+)
''', re.S | re.X)


def tokenize(text):
    pos, out = 0, []
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise SyntaxError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = match.lastgroup
        if kind not in ("comment", "space"):
            out.append((kind, match.group()))
        pos = match.end()
    return out


def parse(text):
    """-> list of blocks: {"name", "label", "attrs": {name: source text}, "blocks": [...]}"""
    tokens = tokenize(text)
    blocks, index = _body(tokens, 0, top=True)
    return blocks


def _body(tokens, i, top=False):
    blocks, attrs = [], {}
    while i < len(tokens):
        kind, value = tokens[i]
        if value == "}":
            if top:
                raise SyntaxError("unbalanced '}'")
            return (blocks, attrs), i + 1
        if kind != "ident":
            raise SyntaxError(f"expected a block or attribute name, got {value!r}")
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if nxt == "=":
            end = _expression_end(tokens, i + 2)
            attrs[value] = " ".join(v for _, v in tokens[i + 2:end])
            i = end
            continue
        label = None
        if tokens[i + 1][0] == "string":
            label = tokens[i + 1][1][1:-1]
            i += 1
        if tokens[i + 1][1] != "{":
            raise SyntaxError(f"block {value} must open with '{{'")
        (inner_blocks, inner_attrs), i = _body(tokens, i + 2)
        blocks.append({"name": value, "label": label, "attrs": inner_attrs, "blocks": inner_blocks})
    if not top:
        raise SyntaxError("unclosed block")
    return blocks, i


def _expression_end(tokens, i):
    """An expression runs until the next attribute/block start at bracket depth 0."""
    depth = 0
    start = i
    while i < len(tokens):
        kind, value = tokens[i]
        if value in "{[(":
            depth += 1
        elif value in "}])":
            if depth == 0:
                return i
            depth -= 1
        elif depth == 0 and i > start and kind == "ident" and (
                # `name =` or `name {` not continuing an expression
                tokens[i - 1][1] not in ("+", "-", "*", "/", "=", ",", "(", ".")
                and i + 1 < len(tokens) and tokens[i + 1][1] in ("=", "{")
                # or a labelled block: `name "label" {`
                or i + 2 < len(tokens) and tokens[i + 1][0] == "string" and tokens[i + 2][1] == "{"):
            return i
        i += 1
    if depth:
        raise SyntaxError("unbalanced brackets in an expression")
    return i


def find(blocks, name, label=None):
    found = [b for b in blocks if b["name"] == name and (label is None or b["label"] == label)]
    assert found, f"no block {name} {label or ''}"
    return found[0]
