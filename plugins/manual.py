"""The `manual` executor: ask the operator a question and record the answer.

Some incident steps only a human can do or judge ("Is the status page
updated?", "Which region is failing over?"). The question itself is the gate,
so the step needs no separate confirmation, and it is never asked in a
dry-run. The answer comes from `--answer STEP=TEXT` when given (CI, scripted
drills), else from the terminal; with neither, the step refuses instead of
hanging on a stdin nobody is watching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    OperatorDeclined,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
)

SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "manual",
    "description": "Ask the operator a question; the answer becomes the step's output.",
    "type": "object",
    "properties": {
        "prompt": {
            "description": "The question or instruction shown to the operator.",
            "type": "string",
            "minLength": 1,
        },
        "choices": {
            "description": "Allowed answers (matched case-insensitively); free text when omitted.",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "uniqueItems": True,
        },
        "help": {
            "description": "Extra guidance shown above the question (where to "
            "look, what a good answer is).",
            "type": "string",
        },
    },
    "required": ["prompt"],
    "additionalProperties": False,
}

RESULT_FIELDS: Mapping[str, str] = {
    "answer": "what the operator answered (the canonical spelling when `choices` is set)",
}


def _choices(config: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(choice) for choice in config.get("choices", ()))


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """`ask the operator: <prompt> [a / b]`; no I/O, and never a prompt."""
    choices = _choices(config)
    summary = f"ask the operator: {config['prompt']}"
    if choices:
        summary += f" [{' / '.join(choices)}]"
    return PlannedCall(
        summary=summary, detail={"prompt": config["prompt"], "choices": list(choices)}
    )


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Take the pre-supplied answer, else ask the terminal, else refuse (OperatorDeclined)."""
    prompt = str(config["prompt"])
    choices = _choices(config)
    call = {"prompt": prompt, "choices": list(choices)}
    if ctx.answer is not None:
        answer = ctx.answer
    elif ctx.io is not None and ctx.io.interactive:
        question = f"{config['help']}\n{prompt}" if config.get("help") else prompt
        answer = ctx.io.ask(question, choices)
    else:
        raise OperatorDeclined(
            f"step '{ctx.step_id}' asks the operator '{prompt}' but there is no terminal; "
            f"answer it with --answer {ctx.step_id}=TEXT"
        )
    return _judge(answer, choices, call)


def _judge(answer: str, choices: Sequence[str], call: Mapping[str, Any]) -> StepResult:
    """Accept any text without choices; with choices, map to the canonical spelling or fail."""
    if choices:
        canonical = {choice.casefold(): choice for choice in choices}
        matched = canonical.get(answer.strip().casefold())
        if matched is None:
            allowed = ", ".join(repr(choice) for choice in choices)
            return StepResult.failure(f"answer {answer!r} is not one of {allowed}", call=call)
        answer = matched
    return StepResult(ok=True, fields={"answer": answer}, output=answer, call=call)


SPEC = ExecutorSpec(
    name="manual",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    needs_confirmation=False,  # the question is the gate
    talks_to_person=True,
    description="Ask the operator a question (optionally one of `choices`) and record the "
    "answer; takes --answer STEP=TEXT when there is no terminal.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The manual executor."""
    return [SPEC]
