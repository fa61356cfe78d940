"""The console's pure parts: words of a command line, the line editor, the escape filter and
the commands the console refuses."""

import pytest

from edgert.client.console import EscapeFilter, LineEditor, refusal, split_words
from edgert.errors import EdgertError


@pytest.mark.parametrize("line,words", [
    ("", []),
    ("   ", []),
    ("ps", ["ps"]),
    ("  logs   -f\tweb-1  ", ["logs", "-f", "web-1"]),
    ("exec web sh -c 'echo a  b'", ["exec", "web", "sh", "-c", "echo a  b"]),
    ("echo 'a \"b\" \\c'", ["echo", 'a "b" \\c']),
    ('echo "a \\"b\\" \\\\ \\n \'c\'"', ["echo", 'a "b" \\ \\n \'c\'']),
    ("echo a\\ b \\'c", ["echo", "a b", "'c"]),
    ("x='' y=\"\" ''", ["x=", "y=", ""]),
    ("a'b'\"c\"d", ["abcd"]),
    ("settings update_windows='Mon-Fri 02:00-04:00'",
     ["settings", "update_windows=Mon-Fri 02:00-04:00"]),
])
def test_split_words(line, words):
    assert split_words(line) == words


@pytest.mark.parametrize("line,message", [
    ("echo 'abc", "unbalanced single quote"),
    ('echo "abc', "unbalanced double quote"),
    ('echo "abc\\"', "unbalanced double quote"),
    ("echo abc\\", "ends with a backslash"),
])
def test_split_words_errors_are_one_line(line, message):
    with pytest.raises(EdgertError) as e:
        split_words(line)
    assert message in str(e.value) and "\n" not in str(e.value)


def feed(data, editor=None):
    """All (echo, events) of typing ``data``."""
    editor = editor or LineEditor()
    editor.receive(data)
    echo, events = b"", []
    while True:
        out, event = editor.next_event()
        echo += out
        if event is None:
            return echo, events
        events.append(event)


def test_typed_line_is_echoed_and_ends_on_cr():
    assert feed(b"ps -a\r") == (b"ps -a\n", [("line", "ps -a")])


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_cr_lf_and_crlf_each_end_one_line(ending):
    _, events = feed(b"one" + ending + b"two" + ending + ending)
    assert events == [("line", "one"), ("line", "two"), ("line", "")]


def test_crlf_split_across_reads_is_one_line_end():
    editor = LineEditor()
    assert feed(b"ps\r", editor)[1] == [("line", "ps")]
    assert feed(b"\nls\r", editor)[1] == [("line", "ls")]


def test_backspace_and_del_erase_one_character_each():
    echo, events = feed(b"psx\x7f\x7f\x08ls\x08\x08ps\r")
    assert events == [("line", "ps")]
    assert echo == b"psx" + b"\b \b" * 3 + b"ls" + b"\b \b" * 2 + b"ps\n"


def test_backspace_on_an_empty_line_echoes_nothing():
    assert feed(b"\x7f\x08\x7fa\r") == (b"a\n", [("line", "a")])


def test_ctrl_u_erases_the_line_in_place():
    echo, events = feed(b"stop web\x15start web\r")
    assert events == [("line", "start web")]
    assert echo == b"stop web" + b"\b \b" * 8 + b"start web\n"


def test_ctrl_u_on_a_wrapped_line_starts_a_new_prompt():
    echo, events = feed(b"x" * 100 + b"\x15ps\r")
    assert events == [("line", "ps")]
    assert echo == b"x" * 100 + b"\nedgert> ps\n"


def test_ctrl_c_discards_the_line():
    echo, events = feed(b"rm -rf\x03ps\r")
    assert events == [("interrupt", None), ("line", "ps")]
    assert echo == b"rm -rf^C\nps\n"


def test_ctrl_d_ends_only_on_an_empty_line():
    assert feed(b"\x04") == (b"\n", [("eof", None)])
    assert feed(b"ps\x04\r")[1] == [("line", "ps")]


def test_control_keys_and_non_ascii_are_neither_kept_nor_echoed():
    echo, events = feed(b"p\x00\x01\x07\x0b\x0c\x1c\x1a\x80\xc3\xa9\xffs\r")
    assert events == [("line", "ps")] and echo == b"ps\n"


def test_tab_is_a_space():
    assert feed(b"logs\tweb\r")[1] == [("line", "logs web")]


@pytest.mark.parametrize("sequence", [b"\x1b[A", b"\x1b[1;5C", b"\x1bOA", b"\x1b[3~", b"\x1bx"])
def test_escape_sequences_of_special_keys_are_dropped(sequence):
    echo, events = feed(b"p" + sequence + b"s\r")
    assert events == [("line", "ps")] and b"\x1b" not in echo


def test_a_control_key_cuts_an_escape_sequence_short():
    assert feed(b"\x1b[12\rps\r")[1] == [("line", ""), ("line", "ps")]


def test_bytes_after_an_event_wait_for_the_next_call():
    editor = LineEditor()
    editor.receive(b"ps\rlogs web\r")
    assert editor.next_event() == (b"ps\n", ("line", "ps"))
    assert editor.next_event() == (b"logs web\n", ("line", "logs web"))
    assert editor.next_event() == (b"", None)


def test_a_line_over_the_limit_is_refused_and_the_next_one_works():
    editor = LineEditor(limit=10)
    echo, events = feed(b"a" * 25 + b"\r" + b"ps\r", editor)
    assert events[0][0] == "error" and "more than 10 characters" in events[0][1]
    assert events[1] == ("line", "ps")
    assert echo == b"a" * 10 + b"\nps\n"  # nothing past the limit was echoed


def test_line_noise_never_grows_the_line_past_the_limit():
    import random
    rng = random.Random(7)
    editor = LineEditor(limit=4096)
    noise = bytes(rng.randrange(32, 127) for _ in range(100000))
    echo, events = feed(noise, editor)
    assert len(editor.chars) <= 4096 and len(echo) <= 4096 and not events
    assert feed(b"\r", editor)[1][0][0] == "error"


def test_escape_filter_removes_sequences_across_writes():
    f = EscapeFilter()
    parts = [b"\x1b[31mred\x1b[0", b"m plain \x1b", b"]0;title\x07after \x1b]2;t\x1b\\x",
             b" \x1bcreset\n"]
    assert b"".join(f.feed(p) for p in parts) == b"red plain after x reset\n"


def test_escape_filter_passes_plain_bytes_through():
    data = bytes(range(256)).replace(b"\x1b", b"")
    assert EscapeFilter().feed(data) == data


@pytest.mark.parametrize("argv", [
    ["console"], ["console", "--tty", "/dev/ttyS1"], ["exec", "-t", "web", "sh"],
    ["exec", "-it", "web", "sh"], ["exec", "-i", "-t", "web", "sh"], ["exec", "--tty", "web"],
    ["run", "-t", "alpine"], ["run", "--name", "x", "--tty", "alpine", "sh"],
])
def test_terminal_programs_are_refused(argv):
    assert refusal(argv)


@pytest.mark.parametrize("argv", [
    ["exec", "web", "ls", "-t"], ["exec", "-i", "web", "ls", "-lt"], ["ps"], ["logs", "-f", "web"],
    ["run", "alpine", "--", "ls", "-t"], ["exec", "web", "sh", "-c", "--tty"],
    ["run", "alpine", "ls", "-t"], ["run", "-e", "-t", "alpine"],
])
def test_other_commands_are_not_refused(argv):
    assert refusal(argv) is None
