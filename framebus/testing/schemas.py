"""Hypothesis strategies derived from msgspec types: the valid examples of a message, and the
values each of its fields refuses, from the limits its type states and nothing else.

``valid(T)`` walks a msgspec type (``msgspec.inspect.type_info``) and the constraints of
its ``Meta``: a Struct comes out as the map msgpack carries, its tag included, with every
field. A Struct's own checks (``__post_init__``) filter the examples. ``invalid(T)`` gives
values just beyond each limit, of other types, and anything else a decoder of T refuses.
Also the raw material: ``values``, any msgpack value, and its parts.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from functools import cache
from typing import Any

import msgspec
from hypothesis import strategies as st
from msgspec import inspect as mi

from framebus.protocol.fields import TimeBase

# -- values of every kind ----------------------------------------------------------------------

_INT_EDGES = [0, 1, -1, 127, 128, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, 2**32, 2**62,
              2**62 + 1, 2**63 - 1, -(2**31), -(2**63), 2**64 - 1, True, False, 1.0, 0.5, "1"]
_STR_EDGES = ["", " ", "\x00", "\n", "\x7f", "\u200b", "é", "\U0001f4a5", "a\x00b", "../x",
              "-x", ".x", "x/y", "%s%n", "\\", "tcp://", "ipc://", "x" * 256, "\x1b[31m", b"x"]

ints = st.one_of(st.sampled_from(_INT_EDGES), st.integers(-(2**63), 2**64 - 1))
texts = st.one_of(st.text(max_size=24), st.sampled_from(_STR_EDGES),
                  st.integers(0, 5000).map(lambda n: "x" * n))
blobs = st.one_of(st.binary(max_size=24), st.sampled_from([b"", b"\0" * 15, b"\0" * 17]),
                  st.integers(0, 5000).map(lambda n: b"\xff" * n))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), texts, blobs)
#: Any msgpack value: scalars, lists and maps of them, a few levels deep.
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=8)
_PRINTABLE = st.characters(codec="utf-8", exclude_categories=("C", "Zl", "Zp"))


# -- examples derived from the types ------------------------------------------------------------

#: Types msgspec cannot see into (a dec_hook makes them), and their form on the wire.
_WIRE_FORMS: dict[type, Any] = {Fraction: TimeBase}
Override = st.SearchStrategy | Callable[[dict], st.SearchStrategy]


def valid(type_: Any, across: dict[str, Override] | None = None,
          **overrides: Override) -> st.SearchStrategy:
    """Values of *type_* (any msgspec type: a Struct, an Annotated int...) as msgpack carries
    them, a Struct as a map with its tag, within every limit its Meta sets. *overrides*
    draw the fields of the Struct *type_* instead, and *across* those of every Struct within
    it too: a strategy, or a function of the fields drawn before (for a rule across fields).
    A Struct's own checks (__post_init__) filter the examples."""
    strategy = _Walk(across or {}).of(mi.type_info(type_), overrides)
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct) and \
            hasattr(type_, "__post_init__"):
        strategy = strategy.filter(lambda example: not _refuses(type_, example))
    return strategy


class _Walk:
    def __init__(self, across: dict[str, Override]) -> None:
        self.across = across

    def of(self, t: mi.Type, overrides: dict[str, Override] | None = None) -> st.SearchStrategy:
        if isinstance(t, mi.StructType):
            return self.struct(t, {**self.across, **(overrides or {})})
        if isinstance(t, mi.IntType):
            lo = t.ge if t.ge is not None else -(2**63) if t.gt is None else t.gt + 1
            hi = t.le if t.le is not None else 2**63 - 1 if t.lt is None else t.lt - 1
            return st.integers(lo, hi)
        if isinstance(t, mi.FloatType):
            return st.floats(t.ge, t.le, allow_nan=t.ge is None and t.le is None)
        if isinstance(t, mi.StrType):
            lo, hi = t.min_length or 0, t.max_length or 24
            if t.pattern is None:
                return st.text(_PRINTABLE, min_size=lo, max_size=hi)
            return st.from_regex(t.pattern, alphabet=_PRINTABLE).filter(
                lambda s: lo <= len(s) <= hi and s.isprintable())
        if isinstance(t, mi.BytesType):
            return st.binary(min_size=t.min_length or 0, max_size=t.max_length or 24)
        if isinstance(t, (mi.ListType, mi.VarTupleType)):
            return st.lists(self.of(t.item_type), min_size=t.min_length or 0,
                            max_size=min(t.max_length or 4, 4))
        if isinstance(t, mi.TupleType):
            return st.tuples(*map(self.of, t.item_types)).map(list)
        if isinstance(t, mi.DictType):
            return st.dictionaries(self.of(t.key_type), self.of(t.value_type),
                                   min_size=t.min_length or 0, max_size=t.max_length or 4)
        if isinstance(t, mi.UnionType):
            return st.one_of(*map(self.of, t.types))
        if isinstance(t, mi.LiteralType):
            return st.sampled_from(t.values)
        if isinstance(t, mi.CustomType):
            return self.of(mi.type_info(_WIRE_FORMS[t.cls]))
        if isinstance(t, mi.AnyType):  # a request's id
            return st.integers(-(2**63), 2**63 - 1)
        simple = {mi.BoolType: st.booleans(), mi.NoneType: st.none()}
        return simple[type(t)]

    def struct(self, t: mi.StructType, overrides: dict[str, Override]) -> st.SearchStrategy:
        # Every field, as framebus's own senders do.
        strategies = [(f.encode_name, overrides[f.name] if f.name in overrides
                       else self.of(f.type)) for f in t.fields]

        @st.composite
        def build(draw) -> dict:
            fields = {t.tag_field: t.tag} if t.tag_field else {}
            for name, strategy in strategies:
                fields[name] = draw(strategy(fields) if callable(strategy) else strategy)
            return fields
        return build()


def _hook(type_: type, value: Any) -> Any:
    return type_(*msgspec.convert(value, _WIRE_FORMS[type_]))


def _refuses(type_: Any, value: Any) -> bool:
    try:
        msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=type_, dec_hook=_hook)
    except (msgspec.ValidationError, RecursionError):
        return True
    return False


@cache
def invalid(type_: Any) -> st.SearchStrategy:
    """Values a field of *type_* refuses: just beyond each limit it states, of other types,
    and anything else that msgspec, decoding *type_*, refuses."""
    info = mi.type_info(type_)
    if isinstance(info, mi.AnyType):  # refuses nothing: anything is as bad as it gets
        return values
    edges = list(_edges(info))
    return st.one_of(st.sampled_from(edges), values, texts, ints).filter(
        lambda value: _refuses(type_, value))


def _edges(t: mi.Type):
    """Values at and beyond the limits of *t* (some of them still valid: filtered later)."""
    yield from (*_INT_EDGES, *_STR_EDGES, None, [], {}, [0] * 9)
    for bound in ("ge", "gt", "le", "lt"):
        if isinstance(getattr(t, bound, None), int):
            yield from (getattr(t, bound) - 1, getattr(t, bound) + 1)
    for bound in ("min_length", "max_length"):
        if isinstance(n := getattr(t, bound, None), int):
            yield from ("x" * (n - 1), "x" * (n + 1), b"b" * max(n - 1, 0), b"b" * (n + 1),
                        [1] * (n + 1), {f"k{i}": 1 for i in range(n + 1)})
    for inner in getattr(t, "types", ()):
        yield from _edges(inner)


def fields_of(struct: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """A Struct's fields by their names on the wire."""
    return {f.encode_name: f for f in msgspec.structs.fields(struct)}
