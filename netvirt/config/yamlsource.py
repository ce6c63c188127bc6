"""Safe YAML loading that remembers where every value came from.

PyYAML's composer does the parsing; this module only walks the composed node tree into plain
Python values and records the line/column of each value, keyed by its YAML path
(a tuple of keys and list indices).  Duplicate keys, aliases and tags are refused:
duplicates silently drop data, aliases can expand exponentially ("billion laughs"), and tags
are how YAML runs code.  An alias composes to the very node it refers to, so the walk finds
it as a node met twice, and stops there: the expansion never happens.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml

from netvirt.errors import ConfigError, Diagnostic

Path = tuple  # of str | int


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class SourceMap:
    """YAML path -> Mark, for values and for mapping keys."""

    def __init__(self, filename: str):
        self.filename = filename
        self.values: dict[Path, Mark] = {}
        self.keys: dict[Path, Mark] = {}

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """Best location for ``path``: the exact node, else the nearest ancestor."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Mark(1, 1))

    def diag(self, path: Path, message: str, *, key: bool = False) -> Diagnostic:
        m = self.mark(path, key=key)
        return Diagnostic(self.filename, m.line, m.col, format_path(path), message)


# libyaml's composer when PyYAML has it (about 10x faster on large files), else PyYAML's.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


_STD_TAGS = {"tag:yaml.org,2002:" + t for t in
             ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}
_COLLECTION_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map",
                    yaml.SequenceNode: "tag:yaml.org,2002:seq"}
# A tenant file is six levels deep; anything much deeper is a mistake, and a deep enough one
# would exhaust Python's recursion limit in this walk (libyaml itself stops at 1000).
MAX_DEPTH = 32


def load_yaml(text: str, filename: str) -> tuple[object, SourceMap]:
    """Parse ``text``; return (plain data, SourceMap).  Raises ConfigError with locations."""
    smap = SourceMap(filename)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        msg = e.problem or e.context or "invalid YAML"
        raise ConfigError([Diagnostic(filename, line, col, "", f"YAML syntax: {msg}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Diagnostic(filename, 1, 1, "", f"YAML: {e}")]) from None
    finally:
        loader.dispose()
    if root is None:
        smap.values[()] = Mark(1, 1)
        return {}, smap
    errors: list[Diagnostic] = []
    data = _walk(root, (), smap, loader, errors, set(), 0)
    if errors:
        raise ConfigError(errors)
    return data, smap


def _walk(node, path, smap, loader, errors, seen, depth):
    if depth > MAX_DEPTH:
        errors.append(smap.diag(path, f"nested more than {MAX_DEPTH} levels deep; a tenant "
                                      f"file needs no more than six"))
        return None
    if id(node) in seen:
        m = _mark(node)
        errors.append(Diagnostic(smap.filename, m.line, m.col, format_path(path),
                                 "aliases are not allowed (the value anchored here is reused "
                                 "through *alias); write the value out in full"))
        return None
    seen.add(id(node))
    smap.values[path] = _mark(node)
    if node.tag not in _STD_TAGS:
        errors.append(smap.diag(path, f"tag {node.tag} is not allowed; remove it"))
        return None
    expected = _COLLECTION_TAGS.get(type(node))  # None: a scalar
    misfit = node.tag != expected if expected else node.tag in _COLLECTION_TAGS.values()
    if misfit:
        errors.append(smap.diag(path, f"tag !!{node.tag.rsplit(':', 1)[1]} does not fit this "
                                      f"value; remove it"))
        return None
    if isinstance(node, yaml.MappingNode):
        out = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                m = _mark(knode)
                errors.append(Diagnostic(smap.filename, m.line, m.col, format_path(path),
                                         "mapping keys must be plain scalars"))
                continue
            key = knode.value
            if key in out:
                first = smap.keys[path + (key,)]
                m = _mark(knode)
                errors.append(Diagnostic(
                    smap.filename, m.line, m.col, format_path(path + (key,)),
                    f"duplicate key {key!r} (first defined at line {first.line}); keep one"))
                continue
            smap.keys[path + (key,)] = _mark(knode)
            out[key] = _walk(vnode, path + (key,), smap, loader, errors, seen, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, path + (i,), smap, loader, errors, seen, depth + 1)
                for i, v in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except Exception as e:  # PyYAML's constructors raise ValueError, KeyError, AttributeError...
        kind = node.tag.rsplit(":", 1)[1]
        # a ValueError says what is wrong (month 13, too many digits); the others are
        # PyYAML's internals and say nothing to a user
        why = f" ({str(e).splitlines()[0]})" if isinstance(e, ValueError) and str(e) else ""
        errors.append(smap.diag(path, f"{_short(node.value)} is not a valid {kind}{why}; "
                                      f"quote it to make it text"))
        return None


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
