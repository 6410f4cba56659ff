"""Text from commands and services, made safe to put on an operator's terminal.

Command output, HTTP bodies and error messages reach the terminal through the
live console and through `runbook log show`. Printed raw, an escape sequence in
them can erase a line and draw a fake "✓ restart action passed" (CSI `\\e[2K` and
`\\r`), set the window title or the clipboard (OSC 0, OSC 52), or reorder what
the operator reads (bidi overrides). So both show every such character as an
escape instead, through the one function here: C0 controls, DEL, C1 controls
(some terminals take `\\x9b` for CSI on its own), `\\r`, Unicode line separators
and bidi controls. What is left of an escape sequence after its ESC is plain text.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with every control character shown as `\\n`, `\\r`, `\\t`, `\\xNN` or `\\uNNNN`.

    `keep` names characters to leave as they are: the live console keeps `"\\t"`
    in output lines it has already split on `"\\n"`; `log show`, one line per
    event, keeps nothing.
    """
    if not keep:
        return _CONTROL.sub(lambda m: _escaped(m.group()), text)
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escaped(m.group()), text)
