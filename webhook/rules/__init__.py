"""One module per admission rule; each mutates a private copy of the pod and reports into `Findings`.

Why this shape: the engine owns the order and the response; a rule owns one decision and its messages.
A rule never reads another rule's output, so each can be read and tested alone. Rules must be
idempotent: run on their own output they change nothing (that is what makes reinvocation safe).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a pod is refused: `reason` is a metric label, `message` is what the user reads."""

    reason: str
    message: str


@dataclass(slots=True)
class Findings:
    """What the rules found for one pod: denials and user-facing warnings."""

    denials: list[Denial] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def deny(self, reason: str, message: str) -> None:
        self.denials.append(Denial(reason, message))

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def container_label(list_name: str, container: dict[str, object]) -> str:
    """`container "train"` or `init container "setup"`, as messages name them."""
    kind = "init container" if list_name == "initContainers" else "container"
    return f'{kind} "{container.get("name") or "?"}"'
