"""Confirmation gates: the only place a run waits for a human to say yes.

An action's `confirm:` follows one path: `--yes` accepts and says so in the log;
a terminal asks; with neither, the answer is no. Re-running an action a crashed
run may already have done is stricter: `--yes` never answers it, only the step's
id typed on a terminal or `--rerun-unfinished STEP`. Every outcome is recorded with
the operator (the name claimed, and the OS user the kernel says), the method and
the exact prompt before the run moves on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runbook.contract import OperatorIO
from runbook.errors import OperatorDeclined
from runbook.log.records import RecordType

Emit = Callable[[RecordType, dict[str, Any]], None]


class Gate:
    """Asks (or refuses) on behalf of one run."""

    def __init__(
        self,
        emit: Emit,
        io: OperatorIO,
        operator: str,
        identity: Mapping[str, Any],
        assume_yes: bool,
        answers: Mapping[str, str] | None = None,
    ) -> None:
        self._emit = emit
        self._io = io
        self._operator = operator
        self._identity = dict(identity)
        self._yes = assume_yes
        self._answers = dict(answers or {})

    def confirm(
        self,
        step_id: str,
        prompt: str,
        require: str | None = None,
        no_terminal_hint: str = "",
        **extra: Any,
    ) -> None:
        """Return when accepted; record and raise OperatorDeclined otherwise."""
        record = {
            "step": step_id,
            "prompt": prompt,
            "operator": self._operator,
            "identity": self._identity,
            "require": require,
            **extra,
        }
        if require is not None and self._typed(step_id, require, record):
            return
        if self._yes and require is None:
            self._emit(
                RecordType.STEP_CONFIRMATION,
                {**record, "accepted": True, "answer": "yes", "method": "--yes"},
            )
            return
        ask = getattr(self._io, "confirm", None)
        if not self._io.interactive or ask is None:
            self._emit(
                RecordType.STEP_CONFIRMATION,
                {**record, "accepted": False, "answer": None, "method": "no-terminal"},
            )
            raise OperatorDeclined(
                no_terminal_hint
                or f"action '{step_id}' needs confirmation ({prompt}) and there is no terminal: "
                "re-run from a terminal or with --yes"
            )
        accepted, answer = ask(prompt, require)
        self._emit(
            RecordType.STEP_CONFIRMATION,
            {**record, "accepted": accepted, "answer": answer, "method": "terminal"},
        )
        if not accepted:
            raise OperatorDeclined(f"operator declined action '{step_id}': {prompt}")

    def _typed(self, step_id: str, require: str, record: dict[str, Any]) -> bool:
        """A gate that wants a name typed back: --yes alone never passes it.

        True when `--answer STEP=NAME` answered it; raises when it was answered wrong or
        when --yes is all there is and no terminal can ask; False to ask on the terminal.
        """
        given = self._answers.get(step_id)
        if given is not None:
            accepted = given.strip() == require
            self._emit(
                RecordType.STEP_CONFIRMATION,
                {**record, "accepted": accepted, "answer": given, "method": "--answer"},
            )
            if not accepted:
                raise OperatorDeclined(f"--answer {step_id}={given!r} does not match {require!r}")
            return True
        if self._yes and not self._io.interactive:
            self._emit(
                RecordType.STEP_CONFIRMATION,
                {**record, "accepted": False, "answer": None, "method": "--yes"},
            )
            raise OperatorDeclined(
                f"action '{step_id}' asks the operator to type '{require}'; --yes does not "
                f"answer that: run it from a terminal or pass --answer {step_id}={require}"
            )
        return False

    def confirm_rerun(
        self, step_id: str, summary: str, hosts: Sequence[str] | None, allowed: bool
    ) -> None:
        """An action started in the old run and has no finish record (on `hosts`, or at all).

        A human decides: `allowed` (`--rerun-unfinished STEP`) or the step's id typed
        on a terminal. `--yes` never answers this: it would repeat an action that may
        have happened, with nobody having said so.
        """
        where = f" on {', '.join(hosts)}" if hosts else ""
        prompt = (
            f"Action '{step_id}' started{where} in the interrupted run ({summary}) but has no "
            f"finish record; it may have taken effect. Run it again{where}?"
        )
        record = {
            "step": step_id,
            "prompt": prompt,
            "operator": self._operator,
            "identity": self._identity,
            "require": step_id,
            "rerun": True,
        }
        if allowed:
            self._emit(
                RecordType.STEP_CONFIRMATION,
                {**record, "accepted": True, "answer": step_id, "method": "--rerun-unfinished"},
            )
            return
        ask = getattr(self._io, "confirm", None)
        if self._io.interactive and ask is not None:
            accepted, answer = ask(prompt, step_id)
            self._emit(
                RecordType.STEP_CONFIRMATION,
                {**record, "accepted": accepted, "answer": answer, "method": "terminal"},
            )
            if not accepted:
                raise OperatorDeclined(f"operator declined re-running action '{step_id}'{where}")
            return
        method = "--yes" if self._yes else "no-terminal"
        self._emit(
            RecordType.STEP_CONFIRMATION,
            {**record, "accepted": False, "answer": None, "method": method},
        )
        raise OperatorDeclined(
            f"action '{step_id}' may have run already{where}: it started in the interrupted "
            f"run and has no finish record. --yes does not answer this: type '{step_id}' at a "
            f"terminal, or pass --rerun-unfinished {step_id} to run it again"
        )
