import pytest

from edgert.record import record

Point = record("Point", "x y z", defaults=(0,))


def test_behaves_like_a_namedtuple():
    p = Point(1, y=2)
    assert p == (1, 2, 0) and p.x == 1 and p.y == 2 and p.z == 0
    x, y, z = p
    assert (x, y, z) == (1, 2, 0)
    assert repr(p) == "Point(x=1, y=2, z=0)"
    assert Point._fields == ("x", "y", "z")
    assert hash(p) == hash((1, 2, 0))
    with pytest.raises(AttributeError):
        p.x = 5


def test_argument_errors():
    with pytest.raises(TypeError, match="missing 'y'"):
        Point(1)
    with pytest.raises(TypeError, match="no field 'w'"):
        Point(1, 2, w=3)
    with pytest.raises(TypeError, match="takes 3 values"):
        Point(1, 2, 3, 4)
