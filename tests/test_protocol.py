"""The wire messages (framebus/protocol/): the relay's, strict as the others; and the fuzz
strategies derived from the types agree with the decoders, both ways."""

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framebus import ProtocolError
from framebus.protocol import broker as pb
from framebus.protocol import relay as wire
from framebus.protocol.descriptor import Descriptor
from framebus.testing.hostile import message
from framebus.testing.schemas import fields_of, invalid

OLD_WANT = {"v": 1, "op": "want", "stream": "cam1", "codec": "jpeg", "quality": 80,
            "token": b"t" * 16, "after": 41}


def test_a_want_is_the_map_it_was():
    want = wire.Want("cam1", "jpeg", 80, b"t" * 16, 41)
    assert msgpack.unpackb(want.pack()) == OLD_WANT
    assert wire.parse_request(msgpack.packb(OLD_WANT)) == want
    assert want.setting == ("jpeg", 80) and wire.Want("cam1").setting == ("raw", 0)
    assert wire.parse_request(wire.BYE) is None
    assert msgpack.unpackb(wire.BYE) == {"v": 1, "op": "bye"}


@pytest.mark.parametrize(("change", "reason"), [
    ({"v": True}, "Expected `int`, got `bool` - at `$.v`"),
    ({"v": 1.0}, "got `float` - at `$.v`"),
    ({"v": 2}, "`$.v`"),
    ({"quality": True}, "got `bool` - at `$.quality`"),
    ({"quality": 101}, "`$.quality`"),
    ({"after": 2**62}, "`$.after`"),
    ({"codec": "png"}, "`$.codec`"),
    ({"token": b"t" * 17}, "`$.token`"),
    ({"stream": "../x"}, "`$.stream`"),
    ({"op": "take"}, "`$.op`"),
    ({"extra": 1}, "unknown field `extra`"),
    ({"stream": "x" * 600}, "exceeds 512"),
])
def test_a_request_is_refused_with_the_field_named(change, reason):
    with pytest.raises(ProtocolError) as caught:
        wire.parse_request(msgpack.packb({**OLD_WANT, **change}))
    assert reason in str(caught.value)


def test_a_request_without_a_version_is_refused():
    with pytest.raises(ProtocolError, match="missing required field `v`"):
        wire.parse_request(msgpack.packb({k: v for k, v in OLD_WANT.items() if k != "v"}))


def test_error_replies_are_strict_both_ways():
    kind, payload = wire.error_reply("not_found", "no stream named 'x'\n\x1b[2J")
    assert kind == wire.ERROR
    code, message = wire.parse_error(payload)  # what it sends is printable
    assert code == "not_found" and message.isprintable() and "no stream named" in message
    for lie in [{"code": "x"}, {"code": "x", "error": "y", "z": 1}, {"code": 1, "error": "y"},
                {"code": "x", "error": "\x07"}]:
        with pytest.raises(ProtocolError):
            wire.parse_error(msgpack.packb(lie))


# -- the strategies, checked against the decoders -------------------------------------------------

MESSAGES = [Descriptor, wire.Want, wire.Bye, wire.ErrorReply, pb.StreamInfo, pb.Reply,
            pb.LookupReply, pb.ListReply, pb.PingReply, pb.Refusal, pb.RelayInfo,
            *[t.cls for t in msgspec.inspect.type_info(pb.Request).types]]
FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def _decodes(struct, example) -> bool:
    if struct is Descriptor:
        Descriptor.unpack(msgpack.packb(example))
    elif struct in (wire.Want, wire.Bye):
        wire.parse_request(msgpack.packb(example))
    else:
        msgspec.msgpack.decode(msgpack.packb(example), type=struct)
    return True


@pytest.mark.parametrize("struct", MESSAGES, ids=lambda s: s.__name__)
@FUZZ
@given(data=st.data())
def test_every_valid_example_decodes(struct, data):
    assert _decodes(struct, data.draw(message(struct)))


@pytest.mark.parametrize("struct", [Descriptor, wire.Want, pb.Register, pb.Heartbeat, pb.Relay],
                         ids=lambda s: s.__name__)
@FUZZ
@given(data=st.data())
def test_a_field_given_a_value_its_type_refuses_is_refused(struct, data):
    example = data.draw(message(struct))
    fields = {name: f for name, f in fields_of(struct).items() if name != "id"}
    name = data.draw(st.sampled_from(sorted(fields)))
    example[name] = data.draw(invalid(fields[name].type))
    with pytest.raises((ProtocolError, msgspec.ValidationError)):
        _decodes(struct, example)
