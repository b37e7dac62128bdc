import pytest

import framebus
from framebus.names import topic, validate_stream_name

GOOD = ["cam1", "a", "Front-Door_2.hd", "0", "x" * 64]
BAD = ["", "x" * 65, "../etc", "a/b", "cam 1", ".hidden", "-flag", "cam\0", "caméra", "a:b",
       None, 7, b"cam1"]


@pytest.mark.parametrize("name", GOOD)
def test_valid_names_pass(name):
    assert validate_stream_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_invalid_names_are_refused(name):
    with pytest.raises(framebus.InvalidName):
        validate_stream_name(name)


@pytest.mark.parametrize("name", ["../x", "a/b", ""])
def test_publisher_and_subscriber_refuse_invalid_names(name):
    with pytest.raises(framebus.InvalidName):
        framebus.Publisher(name, shape=(4, 4, 3))
    with pytest.raises(framebus.InvalidName):
        framebus.Subscriber(name)


def test_topics_match_exactly():
    assert not topic("cam10").startswith(topic("cam1"))
